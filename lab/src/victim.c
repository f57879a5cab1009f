/* victim.c - an ordinary program: it marks main and waits.
 * Built three ways (see setup.sh):
 *   victim-tls.exe   its own TLS callback + mingw CRT's two
 *   victim-crt.exe   only mingw CRT's two TLS callbacks
 *   victim-notls.exe no C runtime, no TLS directory at all */
#include "victim.h"

static void victim_activity(void) {}
