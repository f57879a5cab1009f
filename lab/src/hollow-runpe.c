/* hollow-runpe.c - attack (d): unmap the victim, write payload.exe at its
 * preferred base. See hollow.h. */
#define HOLLOW_UNMAP
#include "hollow.h"

int main(void)
{
    return hollow_main("hollow-runpe");
}
