/* Built by tools/check-install.sh against the installed package. */
#include <qprof/qprof.h>
#include <stdio.h>

int main(void) {
  printf("linked qprof %s (%s)\n", qp_version(), qp_strerror(QP_OK));
  return qp_option_count() > 0 ? 0 : 1;
}
