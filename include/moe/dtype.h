/*===- moe/dtype.h - element types of moec tensors ----------------*- C -*-===*
 *
 * The element types moec reads from and writes to safetensors files. Shared by
 *the compiler and the C runtime API, so the codes are stable: append new ones,
 *never renumber.
 *
 *===----------------------------------------------------------------------===*/

#ifndef MOE_DTYPE_H
#define MOE_DTYPE_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum moe_dtype {
  MOE_DTYPE_INVALID = 0,
  MOE_DTYPE_BOOL = 1,
  MOE_DTYPE_U8 = 2,
  MOE_DTYPE_I8 = 3,
  MOE_DTYPE_U16 = 4,
  MOE_DTYPE_I16 = 5,
  MOE_DTYPE_U32 = 6,
  MOE_DTYPE_I32 = 7,
  MOE_DTYPE_U64 = 8,
  MOE_DTYPE_I64 = 9,
  MOE_DTYPE_F8_E4M3 = 10, /* torch.float8_e4m3fn: no infinities, max 448 */
  MOE_DTYPE_F8_E5M2 = 11,
  MOE_DTYPE_F8_E8M0 = 12, /* unsigned power-of-two scales (MX formats) */
  MOE_DTYPE_F16 = 13,
  MOE_DTYPE_BF16 = 14,
  MOE_DTYPE_F32 = 15,
  MOE_DTYPE_F64 = 16,
} moe_dtype;

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MOE_DTYPE_H */
