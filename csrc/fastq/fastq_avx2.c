/* The fast quantizers inside an AVX2/FMA/F16C target region (x86-64). The source is the same
 * as fastq_vec.c's; -ffp-contract=off still applies, so no multiply and add are fused (checked by
 * tools/check/check_no_fma.sh). Chosen at run time only on CPUs that have AVX2, FMA and F16C. */
#include "fastq/fastq.h"
#include "ref/common.h"
#include "ref/ref.h"
#include "ref/search.h"

#ifdef QTK_FASTQ_HAVE_AVX2

#include "arch/x86/avx2_begin.h"

#include "fastq/fastq_lanes.h"

#define FQ_TABLE qtk_fastq_table_avx2
#define FQ_TABLE_NAME "avx2"
#include "fastq/fastq_body.inc"

#include "arch/x86/avx2_end.h"

#endif
