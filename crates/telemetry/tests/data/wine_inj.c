#include <windows.h>
#include <stdio.h>
typedef LONG (NTAPI *NtUnmap)(HANDLE, PVOID);
typedef LONG (NTAPI *NtMap)(HANDLE, HANDLE, PVOID*, ULONG_PTR, SIZE_T, PLARGE_INTEGER, PSIZE_T, DWORD, ULONG, ULONG);
int main(int argc, char **argv) {
  if (argc > 1) { Sleep(500); return 0; }
  STARTUPINFOA si = {sizeof si}; PROCESS_INFORMATION pi;
  char cmd[MAX_PATH+8]; GetModuleFileNameA(0, cmd, MAX_PATH); strcat(cmd, " child");
  if (!CreateProcessA(0, cmd, 0, 0, 0, CREATE_SUSPENDED, 0, 0, &si, &pi)) return 1;
  unsigned char code[64]; memset(code, 0xC3, sizeof code); code[0]='M'; code[1]='Z';
  LPVOID p = VirtualAllocEx(pi.hProcess, 0, 0x2000, MEM_COMMIT|MEM_RESERVE, PAGE_READWRITE);
  SIZE_T w; WriteProcessMemory(pi.hProcess, p, code, sizeof code, &w);
  DWORD old; VirtualProtectEx(pi.hProcess, p, 0x1000, PAGE_EXECUTE_READ, &old);
  CONTEXT ctx; ctx.ContextFlags = CONTEXT_FULL; GetThreadContext(pi.hThread, &ctx);
  ctx.Rcx = (DWORD64)p; SetThreadContext(pi.hThread, &ctx);
  QueueUserAPC((PAPCFUNC)p, pi.hThread, 0);
  LPVOID q = VirtualAllocEx(pi.hProcess, 0, 0x1000, MEM_COMMIT|MEM_RESERVE, PAGE_EXECUTE_READWRITE);
  HANDLE t = CreateRemoteThread(pi.hProcess, 0, 0, (LPTHREAD_START_ROUTINE)GetProcAddress(GetModuleHandleA("kernel32"), "Sleep"), (LPVOID)10, CREATE_SUSPENDED, 0);
  NtUnmap un = (NtUnmap)GetProcAddress(GetModuleHandleA("ntdll"), "NtUnmapViewOfSection");
  un(pi.hProcess, q); /* fails: not a view */
  HANDLE sec = CreateFileMappingA(INVALID_HANDLE_VALUE, 0, PAGE_EXECUTE_READWRITE, 0, 0x1000, 0);
  NtMap map = (NtMap)GetProcAddress(GetModuleHandleA("ntdll"), "NtMapViewOfSection");
  PVOID vbase = 0; SIZE_T vsize = 0;
  map(sec, pi.hProcess, &vbase, 0, 0, 0, &vsize, 2, 0, PAGE_EXECUTE_READWRITE);
  un(pi.hProcess, vbase);
  SuspendThread(pi.hThread);
  ResumeThread(pi.hThread);
  ResumeThread(pi.hThread);
  ResumeThread(t);
  WaitForSingleObject(pi.hProcess, 5000);
  printf("done %p\n", p);
  return 0;
}
