/* lab.h - helpers shared by every lab program.
 *
 * Only kernel32 is used (no C runtime), so that the CRT-less victim
 * (victim-notls.exe, built with -nostdlib) can include it too.
 *
 * All programs talk to the Rust runner through a per-run control directory
 * whose Windows path (Z:\...) is in the environment variable LABCTL.
 * Marker files hold one line: "qpc=<QueryPerformanceCounter> pid=<windows pid>
 * tid=<windows tid> who=<text>\n". The runner treats a marker as complete
 * once it ends with '\n'.
 */
#ifndef LAB_H
#define LAB_H

#include <windows.h>

/* Every wait is bounded: a program left alone gives up after two minutes. */
#define LAB_TIMEOUT_MS 120000u

static inline char *lab_cat(char *dst, char *end, const char *src)
{
    while (*src && dst < end - 1)
        *dst++ = *src++;
    *dst = 0;
    return dst;
}

static inline char *lab_num(char *dst, char *end, unsigned long long v, unsigned base)
{
    char tmp[24];
    int n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v && n < 23);
    if (base == 16)
        dst = lab_cat(dst, end, "0x");
    while (n > 0 && dst < end - 1)
        *dst++ = tmp[--n];
    *dst = 0;
    return dst;
}

/* Full path of a file in the control directory. */
static inline void lab_path(char *out, DWORD n, const char *name)
{
    DWORD got = GetEnvironmentVariableA("LABCTL", out, n);
    if (got == 0 || got >= n - 40) {
        /* No control directory: nothing sensible to do. */
        ExitProcess(90);
    }
    char *p = out + got;
    p = lab_cat(p, out + n, "\\");
    lab_cat(p, out + n, name);
}

static inline void lab_write(const char *name, const char *text)
{
    char path[MAX_PATH];
    lab_path(path, sizeof path, name);
    HANDLE h = CreateFileA(path, GENERIC_WRITE, FILE_SHARE_READ, NULL, CREATE_ALWAYS,
                           FILE_ATTRIBUTE_NORMAL, NULL);
    if (h == INVALID_HANDLE_VALUE)
        ExitProcess(91);
    DWORD len = 0, done = 0;
    while (text[len])
        len++;
    WriteFile(h, text, len, &done, NULL);
    CloseHandle(h);
}

/* Writes marker NAME: "qpc=... pid=... tid=... who=WHO[ EXTRA]\n". */
static inline void lab_mark2(const char *name, const char *who, const char *extra)
{
    LARGE_INTEGER qpc;
    QueryPerformanceCounter(&qpc);
    char line[512];
    char *end = line + sizeof line - 1; /* keep room for the newline */
    char *p = lab_cat(line, end, "qpc=");
    p = lab_num(p, end, (unsigned long long)qpc.QuadPart, 10);
    p = lab_cat(p, end, " pid=");
    p = lab_num(p, end, GetCurrentProcessId(), 10);
    p = lab_cat(p, end, " tid=");
    p = lab_num(p, end, GetCurrentThreadId(), 10);
    p = lab_cat(p, end, " who=");
    p = lab_cat(p, end, who);
    if (extra && *extra) {
        p = lab_cat(p, end, " ");
        p = lab_cat(p, end, extra);
    }
    *p++ = '\n';
    *p = 0;
    lab_write(name, line);
}

static inline void lab_mark(const char *name, const char *who)
{
    lab_mark2(name, who, NULL);
}

static inline int lab_exists(const char *name)
{
    char path[MAX_PATH];
    lab_path(path, sizeof path, name);
    return GetFileAttributesA(path) != INVALID_FILE_ATTRIBUTES;
}

/* Waits (bounded) until the runner creates NAME in the control directory.
 * With ALERTABLE the thread sleeps alertably, so queued user APCs can run. */
static inline int lab_wait(const char *name, BOOL alertable)
{
    for (DWORD waited = 0; waited < LAB_TIMEOUT_MS; waited += 10) {
        if (lab_exists(name))
            return 1;
        SleepEx(10, alertable);
    }
    return 0;
}

/* Records a failure for the runner and exits. */
static inline void lab_die(const char *what)
{
    char extra[64];
    char *p = lab_cat(extra, extra + sizeof extra, "lasterror=");
    lab_num(p, extra + sizeof extra, GetLastError(), 10);
    lab_mark2("error", what, extra);
    ExitProcess(1);
}

#endif
