//===- MoEDialect.td - the moe dialect definition ----------*- tablegen -*-===//
//
// The `moe` dialect describes Mixture-of-Experts layers at two levels: a block op (`moe.layer`)
// carrying a whole layer's configuration, and explicit pieces (route -> dispatch -> experts ->
// combine) that transformations and code generation work on. Weights never enter the IR: they
// are named references into external safetensors files (`moe.weight`).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_TD
#define MOE_DIALECT_TD

include "mlir/IR/OpBase.td"

def MoE_Dialect : Dialect {
  let name = "moe";
  let cppNamespace = "::mlir::moe";
  let summary = "Mixture-of-Experts layers: routing, dispatch, experts and combine";
  let description = [{
    Values are builtin tensors. Activations are `[T, H]` (T tokens, usually dynamic), expert
    weights are stacked `[E, out, in]` in nn.Linear orientation (y = x * W^T), and routing
    results are `[T, k]` expert ids (i32) and weights (f32).
  }];
  let useDefaultAttributePrinterParser = 1;
  let dependentDialects = ["::mlir::tensor::TensorDialect"];
  let extraClassDeclaration = [{
  private:
    // Defined beside the attribute storage classes, which must be complete there.
    void registerAttributes();
  public:
  }];
}

class MoE_Op<string mnemonic, list<Trait> traits = []>
    : Op<MoE_Dialect, mnemonic, traits>;

#endif // MOE_DIALECT_TD
