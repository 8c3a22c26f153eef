/*
 * Text for the HTML report (report_page.c): every string that came from a
 * store (query text, database, samples, error codes) is written through
 * rq_html_text, which is safe in character data and in quoted attribute
 * values alike: a quoted identifier may hold any character.
 */
#include <stdio.h>
#include <string.h>

#include "report_common.h"

void rq_html_text(FILE *f, const char *s) {
  const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
  size_t n;
  for (; *p; p += n) {
    int32_t cp = rq_utf8_next(p, &n);
    switch (cp) {
    case '&': fputs("&amp;", f); break;
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '"': fputs("&quot;", f); break;
    case '\'': fputs("&#39;", f); break;
    default:
      /* Control characters other than tab and newline would make the page
       * invalid, and so would bytes that are not UTF-8: they are shown as
       * U+FFFD. C1 controls and bidirectional overrides are shown, not
       * obeyed: a numeric reference alone would still reorder the text
       * around it (and &#x80;..&#x9f; mean Windows-1252 characters). */
      if (cp < 0 || (cp < 0x20 && cp != '\t' && cp != '\n') || cp == 0x7f) fputs("&#xfffd;", f);
      else if (rq_is_unsafe(cp)) fprintf(f, "<span class=\"ctl\">&lt;U+%04X&gt;</span>", (unsigned)cp);
      else fwrite(p, 1, n, f);
    }
  }
}
