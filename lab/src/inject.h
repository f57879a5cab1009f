/* inject.h - position-independent injected code, shared by the TLS and APC
 * attacks.
 *
 * The attacker copies the machine code of inject.c (between inj_begin and
 * inj_end) into the victim, followed by a filled-in struct inj_data, and
 * puts a 22-byte stub in front:
 *     mov r9, <address of inj_data>      ; 4th argument
 *     mov rax, <address of inj_entry>
 *     jmp rax
 * The stub is what TLS callback slots / APCs point at. inj_entry has the
 * TLS callback signature plus the data pointer as 4th argument.
 *
 * The injected code resolves every API it needs itself by walking
 * PEB->Ldr and each module's export table (names are in inj_data), writes
 * marker "injected" to the control directory, waits for "release-callback"
 * and then calls the original callback in `chain`, if any.
 */
#ifndef INJECT_H
#define INJECT_H

#include <windows.h>

enum {
    INJ_CreateFileA,
    INJ_WriteFile,
    INJ_CloseHandle,
    INJ_GetFileAttributesA,
    INJ_Sleep,
    INJ_RtlQueryPerformanceCounter,
    INJ_NFUNCS
};

#define INJ_MODE_TLS 0u
#define INJ_MODE_APC 1u

struct inj_data {
    ULONG_PTR chain;          /* original TLS callback to call afterwards, or 0 */
    unsigned mode;            /* INJ_MODE_TLS or INJ_MODE_APC */
    unsigned done;            /* set after the first run */
    char marker_path[MAX_PATH];  /* <control dir>\injected */
    char release_path[MAX_PATH]; /* <control dir>\release-callback */
    char who[48];                /* "who=" text of the marker */
    char keys[4][8];             /* "qpc=", " pid=", " tid=", " who=" */
    char names[INJ_NFUNCS][32];  /* API names to resolve */
};

/* In the attacker: copies stub + code + data into the victim (one RWX
 * allocation). Returns the address of the stub in the victim, or 0. */
ULONG_PTR inj_place(HANDLE process, ULONG_PTR chain, unsigned mode, const char *who, ULONG_PTR *data_out);

#endif
