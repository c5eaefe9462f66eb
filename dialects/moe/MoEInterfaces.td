//===- MoEInterfaces.td - moe dialect interfaces -----------*- tablegen -*-===//
//
// Extension points. A new quantized weight format is one attribute implementing
// WeightEncodingAttrInterface: `moe.dequantize` verifies its operands through it, and later
// stages (the reference evaluator, code generation) dispatch on it.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_INTERFACES_TD
#define MOE_INTERFACES_TD

include "mlir/IR/OpBase.td"

def MoE_WeightEncodingAttrInterface : AttrInterface<"WeightEncodingAttrInterface"> {
  let cppNamespace = "::mlir::moe";
  let description = [{
    A storage encoding of a weight tensor: how the stored tensors (quantized values, scales,
    zero points, ...) that `moe.dequantize` takes map to the logical floating-point tensor it
    produces.
  }];
  let methods = [
    InterfaceMethod<
      /*desc=*/[{Checks that `storage` (the stored tensors, in operand order) can encode a
        logical tensor of type `result`; reports the first problem through `emitError`.}],
      /*retTy=*/"::llvm::LogicalResult",
      /*methodName=*/"verifyStorage",
      /*args=*/(ins "::llvm::function_ref<::mlir::InFlightDiagnostic()>":$emitError,
                    "::mlir::TypeRange":$storage,
                    "::mlir::RankedTensorType":$result)>,
  ];
}

#endif // MOE_INTERFACES_TD
