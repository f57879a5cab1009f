/* minidump.c - evidence writer: minidump.exe <windows pid> <output path>
 * writes a full-memory minidump of the process with Wine's dbghelp. */
#include <windows.h>
#include <dbghelp.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: minidump.exe <pid> <out.dmp>\n");
        return 2;
    }
    DWORD pid = (DWORD)strtoul(argv[1], NULL, 10);
    HANDLE p = OpenProcess(PROCESS_ALL_ACCESS, FALSE, pid);
    if (!p) {
        fprintf(stderr, "OpenProcess(%lu) failed: %lu\n", pid, GetLastError());
        return 1;
    }
    HANDLE f = CreateFileA(argv[2], GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    if (f == INVALID_HANDLE_VALUE) {
        fprintf(stderr, "CreateFileA(%s) failed: %lu\n", argv[2], GetLastError());
        return 1;
    }
    MINIDUMP_TYPE type = MiniDumpWithFullMemory | MiniDumpWithFullMemoryInfo | MiniDumpWithThreadInfo |
                         MiniDumpWithHandleData | MiniDumpWithUnloadedModules;
    if (!MiniDumpWriteDump(p, pid, f, type, NULL, NULL, NULL)) {
        fprintf(stderr, "MiniDumpWriteDump failed: %lu\n", GetLastError());
        CloseHandle(f);
        return 1;
    }
    CloseHandle(f);
    CloseHandle(p);
    return 0;
}
