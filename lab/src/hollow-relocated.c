/* hollow-relocated.c - attack (e): keep the victim mapped, write payload.exe
 * elsewhere, relocated. See hollow.h. */
#include "hollow.h"

int main(void)
{
    return hollow_main("hollow-relocated");
}
