/* attack.h - what every scenario's parent program does around its attack:
 * start the victim suspended, report to the runner, wait, resume, wait.
 *
 *   victim_start()   CreateProcess(<bin dir>\<victim>, CREATE_SUSPENDED)
 *   victim_report()  writes marker "suspended": winpid, wintid, image base,
 *                    victim path and a free-form detail; then waits for the
 *                    runner's "resume" file (the suspended checkpoint)
 *   victim_finish()  ResumeThread, wait for the victim, write "attacker-done"
 */
#ifndef ATTACK_H
#define ATTACK_H

#include "lab.h"
#include <winternl.h>
#include <stdio.h>
#include <string.h>

struct victim {
    PROCESS_INFORMATION pi;
    char exe[MAX_PATH];
    ULONG_PTR peb;
    ULONG_PTR image_base;
};

static inline void bin_path(char *out, DWORD n, const char *file)
{
    DWORD got = GetModuleFileNameA(NULL, out, n);
    if (got == 0 || got >= n)
        lab_die("GetModuleFileNameA");
    char *slash = strrchr(out, '\\');
    if (!slash)
        lab_die("module-path");
    snprintf(slash + 1, n - (DWORD)(slash + 1 - out), "%s", file);
}

static inline void rd(struct victim *v, ULONG_PTR addr, void *buf, SIZE_T len, const char *what)
{
    SIZE_T n = 0;
    if (!ReadProcessMemory(v->pi.hProcess, (LPCVOID)addr, buf, len, &n) || n != len)
        lab_die(what);
}

/* Writes into the victim, making the pages writable for the write when
 * needed (as attackers do with read-only headers / .rdata). */
static inline void wr(struct victim *v, ULONG_PTR addr, const void *buf, SIZE_T len, const char *what)
{
    DWORD old = 0;
    BOOL changed = VirtualProtectEx(v->pi.hProcess, (LPVOID)addr, len, PAGE_READWRITE, &old);
    SIZE_T n = 0;
    if (!WriteProcessMemory(v->pi.hProcess, (LPVOID)addr, buf, len, &n) || n != len)
        lab_die(what);
    if (changed)
        VirtualProtectEx(v->pi.hProcess, (LPVOID)addr, len, old, &old);
}

static inline void victim_start(struct victim *v, const char *victim_file)
{
    memset(v, 0, sizeof *v);
    bin_path(v->exe, sizeof v->exe, victim_file);
    char cmd[MAX_PATH + 4];
    snprintf(cmd, sizeof cmd, "\"%s\"", v->exe);
    STARTUPINFOA si;
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    if (!CreateProcessA(v->exe, cmd, NULL, NULL, FALSE, CREATE_SUSPENDED, NULL, NULL, &si, &v->pi))
        lab_die("CreateProcessA");
    PROCESS_BASIC_INFORMATION pbi;
    ULONG len = 0;
    if (NtQueryInformationProcess(v->pi.hProcess, ProcessBasicInformation, &pbi, sizeof pbi, &len) != 0)
        lab_die("NtQueryInformationProcess");
    v->peb = (ULONG_PTR)pbi.PebBaseAddress;
    rd(v, v->peb + 0x10, &v->image_base, sizeof v->image_base, "read-PEB.ImageBaseAddress");
}

static inline void victim_headers(struct victim *v, IMAGE_NT_HEADERS64 *nt, ULONG_PTR *nt_at)
{
    IMAGE_DOS_HEADER dos;
    rd(v, v->image_base, &dos, sizeof dos, "read-dos-header");
    *nt_at = v->image_base + (ULONG_PTR)dos.e_lfanew;
    rd(v, *nt_at, nt, sizeof *nt, "read-nt-headers");
    if (nt->Signature != IMAGE_NT_SIGNATURE || nt->OptionalHeader.Magic != IMAGE_NT_OPTIONAL_HDR64_MAGIC)
        lab_die("victim-not-pe32plus");
}

static inline void victim_report(struct victim *v, const char *detail)
{
    char text[2048];
    snprintf(text, sizeof text,
             "winpid=%lu\nwintid=%lu\nimage_base=0x%llx\npeb=0x%llx\nvictim=%s\ndetail=%s\n",
             v->pi.dwProcessId, v->pi.dwThreadId, (unsigned long long)v->image_base,
             (unsigned long long)v->peb, v->exe, detail);
    lab_write("suspended", text);
    lab_wait("resume", FALSE);
}

static inline int victim_finish(struct victim *v)
{
    if (ResumeThread(v->pi.hThread) == (DWORD)-1)
        lab_die("ResumeThread");
    DWORD code = 259;
    if (WaitForSingleObject(v->pi.hProcess, LAB_TIMEOUT_MS + 60000) == WAIT_OBJECT_0)
        GetExitCodeProcess(v->pi.hProcess, &code);
    char text[64];
    snprintf(text, sizeof text, "victim_exit=%lu\n", code);
    lab_write("attacker-done", text);
    return 0;
}

#endif
