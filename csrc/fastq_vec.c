/* The fast quantizers at the baseline ISA: SSE2 on x86-64, NEON on arm64, plain C elsewhere. */
#include "common.h"
#include "fastq.h"
#include "ref.h"
#include "search.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"   /* 32-byte vectors without AVX: static functions only */
#endif

#include "fastq_lanes.h"

#define FQ_TABLE qtk_fastq_table_vec
#define FQ_TABLE_NAME "vec"
#include "fastq_body.inc"
