/* The fast quantizers at the baseline ISA: SSE2 on x86-64, NEON on arm64, plain C elsewhere. */
#include "fastq/fastq.h"
#include "ref/common.h"
#include "ref/ref.h"
#include "ref/search.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"   /* 32-byte vectors without AVX: static functions only */
#endif

#include "fastq/fastq_lanes.h"

#define FQ_TABLE qtk_fastq_table_vec
#define FQ_TABLE_NAME "vec"
#include "fastq/fastq_body.inc"
