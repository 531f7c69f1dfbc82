/* Element-wise kernels of train/ are compiled for AVX-512, AVX2 and baseline x86-64 and picked at
 * load time, as embed/'s layers are (the wide versions run exp/erf loops several times faster). */
#ifndef LVD_TRAIN_SIMD_H
#define LVD_TRAIN_SIMD_H

#define LVD_TRAIN_SIMD __attribute__((target_clones("avx512f", "avx2", "default")))

#endif
