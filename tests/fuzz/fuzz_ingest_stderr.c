/* libFuzzer target for the stderr log reader (lib/ingest/); see fuzz_ingest.h. */
#include "fuzz_ingest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_ingest(data, size, QP_LOG_STDERR);
}
