/* payload.c - the PE that hollowing scenarios put in place of the victim.
 * Its own TLS callback is the "injected code": it marks "injected" and waits
 * for "release-callback"; its main marks "main" (who=payload-main). */
#include "lab.h"

static void NTAPI payload_tls(PVOID module, DWORD reason, PVOID reserved)
{
    (void)reserved;
    if (reason != DLL_PROCESS_ATTACH)
        return;
    char extra[64];
    char *p = lab_cat(extra, extra + sizeof extra, "module=");
    lab_num(p, extra + sizeof extra, (ULONG_PTR)module, 16);
    lab_mark2("injected", "payload-tls-callback", extra);
    lab_wait("release-callback", FALSE);
}
__attribute__((section(".CRT$XLF"), used)) static const PIMAGE_TLS_CALLBACK payload_tls_ptr = payload_tls;

int main(void)
{
    lab_mark("main", "payload-main");
    lab_mark("main-ready", "payload-main");
    lab_wait("release-main", TRUE);
    return 0;
}
