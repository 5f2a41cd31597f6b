/* Linked into the arm64 binary, which is built against Debian bookworm's glibc 2.36.
 *
 * Debian sid's static Swift runtime was compiled against newer glibc headers, which
 * redirect strtol, strtoll and sscanf to their C23 variants and declare strlcpy, all
 * added in glibc 2.38. The C23 variants differ only in also accepting a "0b" prefix
 * with base 0 or 2; forwarding to the classic functions lets one binary run on
 * bookworm (2.36) and trixie (2.41). On 2.38 and later the binary's own copies are
 * used, which is harmless. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

long __isoc23_strtol(const char *text, char **end, int base) {
    return strtol(text, end, base);
}

long long __isoc23_strtoll(const char *text, char **end, int base) {
    return strtoll(text, end, base);
}

int __isoc23_sscanf(const char *text, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    int assigned = vsscanf(text, format, arguments);
    va_end(arguments);
    return assigned;
}

size_t strlcpy(char *destination, const char *source, size_t size) {
    size_t length = strlen(source);
    if (size > 0) {
        size_t copied = length < size - 1 ? length : size - 1;
        memcpy(destination, source, copied);
        destination[copied] = '\0';
    }
    return length;
}
