/* Opens an AVX2 + FMA + F16C target region: every function after this include, up to the
 * matching avx2_end.h, is compiled for those extensions while the rest of the build stays
 * baseline (the dispatcher calls them only on CPUs that have them). -ffp-contract=off still
 * applies inside, so FMA is never used implicitly. No include guard: a file may open a region
 * once, and each opening needs its closing. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
