/* What isa.c chose, for the core files that run it (quant.c, custom.c, matmul.c): the kernel
 * table and the fast quantizer table in use. Each call reads them once and keeps them to its end;
 * the first read runs the CPU detection. */
#ifndef QTK_ISA_INTERNAL_H
#define QTK_ISA_INTERNAL_H

#include "fastq/fastq.h"
#include "ref/kernels.h"

/* The active kernel table (never NULL). */
const qtk_kernels *qtk_kernels_active(void);

/* The active fast quantizer table, or NULL when the reference row functions are selected. */
const qtk_fastq_table *qtk_fastq_active(void);

#endif
