/* victim.h - the skeleton shared by every program an attack or control
 * starts: victim-tls, victim-crt, victim-notls, jit, selfunpack.
 *
 * Define VICTIM_NAME, optionally VICTIM_OWN_TLS (adds the program's own TLS
 * callback) and VICTIM_NO_CRT (entry point without the mingw C runtime, so the
 * image has no TLS directory at all), then include this file and define
 * `static void victim_activity(void)` before including it.
 *
 * main() writes marker "main" first thing, then does the program's activity,
 * writes "main-ready" and waits alertably for "release-main".
 */
#include "lab.h"

static void victim_activity(void);

#ifdef VICTIM_OWN_TLS
/* The program's own, legitimate TLS callback. It marks "tls" and waits for
 * "release-callback", so benign scenarios have an in-callback checkpoint. */
static void NTAPI victim_tls(PVOID module, DWORD reason, PVOID reserved)
{
    (void)module;
    (void)reserved;
    if (reason != DLL_PROCESS_ATTACH)
        return;
    lab_mark("tls", VICTIM_NAME "-own-tls-callback");
    lab_wait("release-callback", FALSE);
}
/* mingw's CRT puts its two callbacks in .CRT$XLC and .CRT$XLD; ours follows. */
__attribute__((section(".CRT$XLF"), used)) static const PIMAGE_TLS_CALLBACK victim_tls_ptr = victim_tls;
#endif

static int victim_main(void)
{
    lab_mark("main", VICTIM_NAME "-main");
    victim_activity();
    lab_mark("main-ready", VICTIM_NAME "-main");
    /* Alertable: a user APC queued to this thread (early-bird-apc) runs here. */
    lab_wait("release-main", TRUE);
    return 0;
}

#ifdef VICTIM_NO_CRT
void __stdcall lab_entry(void)
{
    ExitProcess((UINT)victim_main());
}
#else
int main(void)
{
    return victim_main();
}
#endif
