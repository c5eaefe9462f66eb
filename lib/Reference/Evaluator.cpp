//===- Evaluator.cpp - the float64 reference evaluator --------------------===//

#include "lib/Reference/Evaluator.h"
#include "lib/Reference/WeightMaterializer.h"

#include "lib/Support/DType.h"
#include "lib/Support/FloatFormats.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/Path.h"

#include <cmath>
#include <set>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::reference;

//===----------------------------------------------------------------------===//
// Weights
//===----------------------------------------------------------------------===//

static std::string shapeString(llvm::ArrayRef<int64_t> shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

/// `source` transposed: result dimension i is source dimension permutation[i].
static RefTensor permute(const RefTensor &source,
                         llvm::ArrayRef<int64_t> permutation) {
  int64_t rank = source.rank();
  SmallVector<int64_t> shape, strides(rank, 1), index(rank, 0);
  for (int64_t d : permutation)
    shape.push_back(source.dim(d));
  for (int64_t d = rank - 2; d >= 0; --d)
    strides[d] = strides[d + 1] * source.dim(d + 1);
  RefTensor result(shape);
  for (int64_t linear = 0; linear < result.numel(); ++linear) {
    int64_t offset = 0;
    for (int64_t d = 0; d < rank; ++d)
      offset += index[d] * strides[permutation[d]];
    result.data[linear] = source.data[offset];
    for (int64_t d = rank - 1; d >= 0 && ++index[d] == shape[d]; --d)
      index[d] = 0;
  }
  return result;
}

FailureOr<RefTensor> reference::readWeight(const ::moe::Checkpoint &checkpoint,
                                           WeightOp weight, int64_t expert) {
  RankedTensorType type = weight.getResult().getType();
  moe_dtype dtype = *getStorageDType(type.getElementType());
  SmallVector<int64_t> stored = weight.getStoredShape();
  std::optional<ArrayRef<int64_t>> permutation = weight.getPermutation();
  bool stacked = weight.getExperts().has_value();
  bool slice = expert >= 0 && type.getRank() > 0;
  if (slice && !stacked && permutation && (*permutation)[0] != 0)
    return weight.emitOpError()
           << "keeps its expert dimension elsewhere than first, so "
              "one expert's slice cannot be read on its own";

  // Which stored tensors to read (all experts' when stacked and whole), and
  // which block of each (one expert's, when slicing an unstacked [E, ...]
  // tensor).
  SmallVector<int64_t> experts;
  if (stacked && !slice)
    for (int64_t e = 0, n = *weight.getExperts(); e < n; ++e)
      experts.push_back(e);
  else
    experts.push_back(stacked ? expert : 0);
  SmallVector<int64_t> blockShape(stored);
  int64_t block = 0;
  if (slice && !stacked) {
    blockShape.erase(blockShape.begin());
    block = expert;
  }
  int64_t perBlock = RefTensor::numElements(blockShape);
  SmallVector<int64_t> readShape(blockShape);
  if (stacked && !slice)
    readShape.insert(readShape.begin(), experts.size());
  RefTensor raw(readShape);
  for (auto [i, e] : llvm::enumerate(experts)) {
    std::string name =
        stacked ? weight.getTensorName(e) : weight.getName().str();
    // A weight `from` an absolute path reads a file a pass derived (e.g.
    // calibration states); otherwise the checkpoint's index finds the shard.
    std::optional<::moe::Checkpoint::Entry> entry;
    std::optional<StringRef> file = weight.getFile();
    if (file && llvm::sys::path::is_absolute(*file)) {
      llvm::Expected<::moe::Checkpoint::Entry> external =
          checkpoint.getExternal(*file, name);
      if (!external)
        return weight.emitOpError() << llvm::toString(external.takeError());
      entry = *external;
    } else {
      entry = checkpoint.find(name);
    }
    if (!entry)
      return weight.emitOpError()
             << "tensor '" << name << "' is not in the checkpoint "
             << checkpoint.getDirectory();
    const ::moe::TensorInfo &info = *entry->tensor;
    if (info.dtype != dtype ||
        llvm::ArrayRef<int64_t>(info.shape) != llvm::ArrayRef(stored))
      return weight.emitOpError()
             << "tensor '" << name << "' in " << entry->file->getPath()
             << " is " << ::moe::getSafetensorsName(info.dtype) << " "
             << shapeString(info.shape) << " but the IR expects "
             << ::moe::getSafetensorsName(dtype) << " " << shapeString(stored);
    llvm::ArrayRef<uint8_t> bytes = entry->file->getData(info);
    double *out = raw.data.data() + i * perBlock;
    for (int64_t j = 0; j < perBlock; ++j)
      out[j] = ::moe::loadElement(dtype, bytes.data(), block * perBlock + j);
  }
  if (!permutation)
    return raw;
  // Slicing one expert drops the (first, unmoved) expert dimension of the
  // permutation.
  SmallVector<int64_t> order;
  for (size_t d = slice ? 1 : 0; d < permutation->size(); ++d)
    order.push_back((*permutation)[d] - (slice ? 1 : 0));
  return permute(raw, order);
}

FailureOr<const RefTensor *> WeightLoader::load(WeightOp weight) {
  // Two references load the same data iff their attributes and type agree.
  std::string key;
  llvm::raw_string_ostream(key)
      << weight->getAttrDictionary() << " : " << weight.getResult().getType();
  if (auto it = cache.find(key); it != cache.end())
    return &it->second;
  FailureOr<RefTensor> loaded = readWeight(checkpoint, weight, /*expert=*/-1);
  if (failed(loaded))
    return failure();
  return &(cache[key] = std::move(*loaded));
}

//===----------------------------------------------------------------------===//
// Ops
//===----------------------------------------------------------------------===//

namespace {

/// The values of one evaluation: SSA value -> tensor.
class Interpreter {
public:
  Interpreter(WeightLoader &weights) : weights(weights) {}

  LogicalResult run(Operation *op);

  void bind(Value value, RefTensor tensor) {
    values[value] = std::move(tensor);
  }
  const RefTensor &get(Value value) { return values.at(value); }
  const RefTensor *getOptional(Value value) {
    return value ? &values.at(value) : nullptr;
  }
  std::optional<Routing> routing;

private:
  FfnWeights ffnWeights(Value gate, Value up, Value down, Value gateBias,
                        Value upBias, Value downBias) {
    return {getOptional(gate),     getOptional(up),     getOptional(down),
            getOptional(gateBias), getOptional(upBias), getOptional(downBias)};
  }

  LogicalResult evaluateLayer(LayerOp op);

  WeightLoader &weights;
  std::optional<WeightMaterializer> materializer;
  llvm::DenseMap<Value, RefTensor> values;
};

} // namespace

LogicalResult Interpreter::evaluateLayer(LayerOp op) {
  auto emitError = [&] { return op.emitOpError(); };
  const RefTensor &input = get(op.getInput());
  Routing routed = route(op.getRouting(), input, get(op.getRouterWeight()),
                         getOptional(op.getRouterBias()),
                         getOptional(op.getCorrectionBias()));
  if (!routing)
    routing = routed;
  int64_t numExperts = get(op.getRouterWeight()).dim(0);
  std::optional<double> capacity;
  if (FloatAttr attr = op.getCapacityFactorAttr())
    capacity = attr.getValueAsDouble();
  FailureOr<Dispatch> dispatched = dispatch(
      emitError, input, routed.ids, routed.weights, numExperts, capacity);
  if (failed(dispatched))
    return failure();
  bool scaleInput = op.getWeightsScaleInput();
  FfnWeights routedWeights =
      ffnWeights(op.getGateProj(), op.getUpProj(), op.getDownProj(),
                 op.getGateBias(), op.getUpBias(), op.getDownBias());
  if (DenseI64ArrayAttr widths = op.getExpertWidthsAttr())
    routedWeights.widths = widths.asArrayRef();
  FailureOr<RefTensor> expertOutputs =
      experts(emitError, op.getFfn(), dispatched->permuted,
              dispatched->expertOffsets, routedWeights,
              scaleInput ? &dispatched->permutedWeights : nullptr);
  if (failed(expertOutputs))
    return failure();
  std::optional<RefTensor> shared;
  if (op.getSharedUpProj())
    shared =
        sharedExpert(*op.getSharedFfn(), input,
                     ffnWeights(op.getSharedGateProj(), op.getSharedUpProj(),
                                op.getSharedDownProj(), {}, {}, {}),
                     getOptional(op.getSharedSigmoidGate()));
  FailureOr<RefTensor> result =
      combine(emitError, *expertOutputs, dispatched->sourceSlots,
              routed.weights, shared ? &*shared : nullptr, scaleInput);
  if (failed(result))
    return failure();
  bind(op.getResult(), std::move(*result));
  return success();
}

LogicalResult Interpreter::run(Operation *op) {
  auto emitError = [&] { return op->emitOpError(); };
  return llvm::TypeSwitch<Operation *, LogicalResult>(op)
      .Case([&](WeightOp weight) -> LogicalResult {
        FailureOr<const RefTensor *> loaded = weights.load(weight);
        if (failed(loaded))
          return failure();
        bind(weight.getResult(), **loaded);
        return success();
      })
      .Case([&](DequantizeOp dequant) -> LogicalResult {
        SmallVector<const RefTensor *> storage;
        for (Value value : dequant.getStorage())
          storage.push_back(&get(value));
        FailureOr<RefTensor> result =
            dequantize(emitError, dequant.getEncoding(), storage,
                       dequant.getResult().getType());
        if (failed(result))
          return failure();
        bind(dequant.getResult(), std::move(*result));
        return success();
      })
      .Case([&](QuantizeOp quant) -> LogicalResult {
        FailureOr<SmallVector<RefTensor>> storage =
            quantize(emitError, quant.getEncoding(), get(quant.getInput()),
                     quant.getStorage().getTypes(),
                     getOptional(quant.getCalibration()), quant.getClipRatio());
        if (failed(storage))
          return failure();
        for (auto [result, tensor] : llvm::zip(quant.getStorage(), *storage))
          bind(result, std::move(tensor));
        return success();
      })
      .Case([&](RouteOp routeOp) -> LogicalResult {
        Routing routed =
            route(routeOp.getRouting(), get(routeOp.getInput()),
                  get(routeOp.getGateWeight()), getOptional(routeOp.getBias()),
                  getOptional(routeOp.getCorrectionBias()));
        if (!routing)
          routing = routed;
        bind(routeOp.getTopkIds(), routed.ids);
        bind(routeOp.getTopkWeights(), std::move(routed.weights));
        return success();
      })
      .Case([&](DispatchOp dispatchOp) -> LogicalResult {
        std::optional<double> capacity;
        if (FloatAttr attr = dispatchOp.getCapacityFactorAttr())
          capacity = attr.getValueAsDouble();
        FailureOr<Dispatch> result = dispatch(
            emitError, get(dispatchOp.getInput()), get(dispatchOp.getTopkIds()),
            get(dispatchOp.getTopkWeights()), dispatchOp.getNumExperts(),
            capacity);
        if (failed(result))
          return failure();
        bind(dispatchOp.getPermuted(), std::move(result->permuted));
        bind(dispatchOp.getPermutedWeights(),
             std::move(result->permutedWeights));
        bind(dispatchOp.getSourceSlots(), std::move(result->sourceSlots));
        bind(dispatchOp.getExpertOffsets(), std::move(result->expertOffsets));
        return success();
      })
      .Case([&](ExpertsOp expertsOp) -> LogicalResult {
        FfnWeights routedWeights =
            ffnWeights(expertsOp.getGateProj(), expertsOp.getUpProj(),
                       expertsOp.getDownProj(), expertsOp.getGateBias(),
                       expertsOp.getUpBias(), expertsOp.getDownBias());
        if (DenseI64ArrayAttr widths = expertsOp.getExpertWidthsAttr())
          routedWeights.widths = widths.asArrayRef();
        FailureOr<RefTensor> result =
            experts(emitError, expertsOp.getFfn(), get(expertsOp.getInput()),
                    get(expertsOp.getExpertOffsets()), routedWeights,
                    getOptional(expertsOp.getRowScales()));
        if (failed(result))
          return failure();
        bind(expertsOp.getResult(), std::move(*result));
        return success();
      })
      .Case([&](SharedExpertOp shared) -> LogicalResult {
        bind(shared.getResult(),
             sharedExpert(shared.getFfn(), get(shared.getInput()),
                          ffnWeights(shared.getGateProj(), shared.getUpProj(),
                                     shared.getDownProj(), {}, {}, {}),
                          getOptional(shared.getSigmoidGate())));
        return success();
      })
      .Case([&](CombineOp combineOp) -> LogicalResult {
        FailureOr<RefTensor> result = combine(
            emitError, get(combineOp.getExpertOutputs()),
            get(combineOp.getSourceSlots()), get(combineOp.getTopkWeights()),
            getOptional(combineOp.getAddend()), combineOp.getUnweighted());
        if (failed(result))
          return failure();
        bind(combineOp.getResult(), std::move(*result));
        return success();
      })
      .Case([&](ScaleChannelsOp scaleOp) -> LogicalResult {
        // In float64 like every activation here; compiled code multiplies in
        // f32.
        RefTensor result = get(scaleOp.getInput());
        const RefTensor &scales = get(scaleOp.getScales());
        int64_t hidden = scales.numel();
        for (int64_t i = 0; i < result.numel(); ++i)
          result.data[i] *= scales.data[i % hidden];
        bind(scaleOp.getResult(), std::move(result));
        return success();
      })
      .Case([&](LayerOp layer) { return evaluateLayer(layer); })
      // The two upstream ops moe passes introduce on weights:
      // moe-fuse-gate-up's concat and the zero bias it may need.
      .Case([&](tensor::ConcatOp concatOp) -> LogicalResult {
        SmallVector<const RefTensor *> parts;
        for (Value input : concatOp.getInputs())
          parts.push_back(&get(input));
        bind(concatOp.getResult(), concat(parts, concatOp.getDim()));
        return success();
      })
      .Case([&](arith::ConstantOp constant) -> LogicalResult {
        auto elements = dyn_cast<DenseElementsAttr>(constant.getValue());
        if (!elements)
          return constant.emitOpError()
                 << "is not a dense tensor constant; the reference "
                    "evaluator reads only those";
        bind(constant.getResult(), fromElements(elements));
        return success();
      })
      .Case([&](func::ReturnOp) { return success(); })
      .Default([&](Operation *other) -> LogicalResult {
        // Weight expressions recorded by compression passes: computed from
        // the checkpoint by the one place that knows them.
        if (WeightMaterializer::isWeightExpression(other)) {
          if (!materializer)
            materializer.emplace(weights.getCheckpoint());
          for (Value result : other->getResults()) {
            FailureOr<RefTensor> value = materializer->get(result);
            if (failed(value))
              return failure();
            bind(result, std::move(*value));
          }
          return success();
        }
        return other->emitOpError()
               << "is not supported by the reference evaluator";
      });
}

FailureOr<Evaluation> reference::evaluate(func::FuncOp function,
                                          const RefTensor &input,
                                          WeightLoader &weights) {
  FunctionType type = function.getFunctionType();
  auto argType = type.getNumInputs() == 1
                     ? dyn_cast<RankedTensorType>(type.getInput(0))
                     : RankedTensorType();
  if (!argType || argType.getRank() != 2 || type.getNumResults() != 1)
    return function.emitOpError() << "cannot be evaluated: it must take one "
                                     "[tokens, hidden] tensor and return one";
  if (input.rank() != 2 || input.dim(0) < 1 ||
      (!argType.isDynamicDim(0) && argType.getDimSize(0) != input.dim(0)) ||
      (!argType.isDynamicDim(1) && argType.getDimSize(1) != input.dim(1)))
    return function.emitOpError()
           << "takes " << argType << " but the input has shape "
           << shapeString(input.shape);
  if (function.isExternal() || !function.getBody().hasOneBlock())
    return function.emitOpError()
           << "needs a body of one block to be evaluated";

  Interpreter interpreter(weights);
  Block &body = function.getBody().front();
  // The input is taken exactly as given (not rounded to the argument's element
  // type): compiled code reads f32 hidden states as f32, and the oracle must
  // see the same values.
  interpreter.bind(body.getArgument(0), input);
  for (Operation &op : body)
    if (failed(interpreter.run(&op)))
      return failure();

  auto returnOp = cast<func::ReturnOp>(body.getTerminator());
  Evaluation result{interpreter.get(returnOp.getOperand(0)),
                    interpreter.routing};
  return result;
}

llvm::Expected<RefTensor>
reference::readHiddenStates(const ::moe::SafetensorsFile &file,
                            llvm::StringRef path, llvm::StringRef name) {
  const ::moe::TensorInfo *tensor = file.find(name);
  if (!tensor)
    return llvm::createStringError("%s: no tensor named '%s'",
                                   path.str().c_str(), name.str().c_str());
  if (tensor->shape.size() != 2)
    return llvm::createStringError(
        "%s: tensor '%s' must be 2-D [tokens, hidden]", path.str().c_str(),
        name.str().c_str());
  if (tensor->dtype != MOE_DTYPE_F32 && tensor->dtype != MOE_DTYPE_BF16)
    return llvm::createStringError(
        "%s: tensor '%s' must be F32 or BF16, not %s", path.str().c_str(),
        name.str().c_str(),
        ::moe::getSafetensorsName(tensor->dtype).str().c_str());
  if (tensor->shape[0] == 0)
    return llvm::createStringError("%s: tensor '%s' has no tokens",
                                   path.str().c_str(), name.str().c_str());
  RefTensor result({tensor->shape[0], tensor->shape[1]});
  llvm::ArrayRef<uint8_t> bytes = file.getData(*tensor);
  for (int64_t i = 0; i < result.numel(); ++i)
    result.data[i] = ::moe::loadElement(tensor->dtype, bytes.data(), i);
  return result;
}

double reference::relativeError(const RefTensor &want,
                                llvm::function_ref<double(int64_t)> got) {
  double diff = 0, norm = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    double d = got(i) - want.data[i];
    diff += d * d;
    norm += want.data[i] * want.data[i];
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

int64_t reference::tokensWithSameExperts(
    const RefTensor &want, llvm::function_ref<int64_t(int64_t, int64_t)> got) {
  int64_t tokens = want.dim(0), k = want.dim(1), agree = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    std::multiset<int64_t> a, b;
    for (int64_t j = 0; j < k; ++j) {
      a.insert(static_cast<int64_t>(want.data[t * k + j]));
      b.insert(got(t, j));
    }
    agree += a == b;
  }
  return agree;
}
