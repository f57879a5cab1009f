/* launch.c - benign parent: create the child (LAUNCH_CHILD) suspended and
 * resume it without any write. Built as benign-suspend-resume.exe (child
 * victim-tls.exe), benign-jit.exe (child jit.exe) and
 * benign-self-unpack.exe (child selfunpack.exe). */
#include "attack.h"

int main(void)
{
    struct victim v;
    victim_start(&v, LAUNCH_CHILD);
    victim_report(&v, "no-writes");
    return victim_finish(&v);
}
