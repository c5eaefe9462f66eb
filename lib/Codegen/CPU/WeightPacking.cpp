//===- WeightPacking.cpp - weights in the layout generated code reads -----===//

#include "lib/Codegen/CPU/WeightPacking.h"

#include "lib/Reference/Evaluator.h"
#include "lib/Reference/Kernels.h"
#include "lib/Reference/WeightMaterializer.h"
#include "lib/Support/DType.h"
#include "lib/Support/FloatFormats.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include "llvm/Support/SHA256.h"

#include <cstdio>
#include <cstring>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::cpu;
using reference::RefTensor;

namespace {

/// Appends `value` as `dtype` (BF16 or F32) to `bytes`.
void append(std::vector<uint8_t> &bytes, moe_dtype dtype, double value) {
  if (dtype == MOE_DTYPE_BF16) {
    uint16_t bits = ::moe::floatToBf16(static_cast<float>(value));
    bytes.push_back(uint8_t(bits & 0xFF));
    bytes.push_back(uint8_t(bits >> 8));
    return;
  }
  float single = static_cast<float>(value);
  uint8_t raw[4];
  std::memcpy(raw, &single, 4);
  bytes.insert(bytes.end(), raw, raw + 4);
}

/// Produces a stacked tensor one expert at a time: `load(source, e)` reads
/// what expert e's bytes are made of, `body(matrices, bytes)` (or
/// `body(matrices, bytes, e)`, for layouts whose experts differ) lays them
/// out, and each expert's bytes go to `emit` before the next is read (memory
/// stays bounded by one expert).
template <typename Body, typename Load>
LogicalResult streamExperts(const ::moe::Checkpoint &checkpoint, int64_t E,
                            const std::function<void(ArrayRef<uint8_t>)> &emit,
                            Body body, Load load) {
  reference::WeightMaterializer source(checkpoint);
  for (int64_t e = 0; e < E; ++e) {
    auto matrices = load(source, e);
    if (failed(matrices))
      return failure();
    std::vector<uint8_t> bytes;
    if constexpr (std::is_invocable_v<Body &, decltype(*matrices) &,
                                      std::vector<uint8_t> &, int64_t>)
      body(*matrices, bytes, e);
    else
      body(*matrices, bytes);
    emit(bytes);
  }
  return success();
}

/// The fp8 (e4m3) or mxfp4 encoding whose codes a projection with K rows per
/// panel keeps (getFloatCodeEncoding), `gate` (when separate) stored like
/// `up`; null when it stays dense. A last partial group of k rows reads
/// zero-padded codes; e2m1 codes pair k rows, so K must be even. The kernels
/// round dequantized weights to bf16 or not at all, so other result types
/// stay dense.
Attribute floatCodesKept(Value up, Value gate, int64_t K) {
  using reference::WeightMaterializer;
  Attribute encoding = WeightMaterializer::getFloatCodeEncoding(up);
  if (!encoding ||
      (gate && WeightMaterializer::getFloatCodeEncoding(gate) != encoding))
    return {};
  Type element = getElementTypeOrSelf(up.getType());
  if (!element.isF32() && !element.isBF16())
    return {};
  if (isa<Mxfp4EncodingAttr>(encoding) && K % 2)
    return {};
  return encoding;
}

moe_dtype packedType(Value weight) {
  Type element = cast<RankedTensorType>(weight.getType()).getElementType();
  return element.isBF16() ? MOE_DTYPE_BF16 : MOE_DTYPE_F32;
}

} // namespace

const PackedTensor *WeightPacker::declare(std::string name, moe_dtype dtype,
                                          std::vector<int64_t> shape,
                                          Producer producer) {
  if (uint64_t gap = nextOffset % options.tensorAlignment) {
    int64_t padBytes = int64_t(options.tensorAlignment - gap);
    std::string padName = "__pad." + std::to_string(padCount++);
    auto pad = std::make_unique<PackedTensor>();
    pad->name = padName;
    pad->dtype = MOE_DTYPE_U8;
    pad->shape = {padBytes};
    pad->offset = nextOffset;
    nextOffset += uint64_t(padBytes);
    tensors.push_back(std::move(pad));
    producers.push_back([padBytes](const Emit &emit) {
      emit(std::vector<uint8_t>(size_t(padBytes), 0));
      return success();
    });
  }
  auto tensor = std::make_unique<PackedTensor>();
  tensor->name = std::move(name);
  tensor->dtype = dtype;
  tensor->shape = std::move(shape);
  tensor->offset = nextOffset;
  nextOffset += *::moe::getTensorByteSize(dtype, tensor->shape);
  tensors.push_back(std::move(tensor));
  producers.push_back(std::move(producer));
  return tensors.back().get();
}

PackedQuantization WeightPacker::planQuantized(
    const std::string &name, Attribute encoding, int64_t E, int64_t panels,
    int64_t K, int64_t P, const ColumnSource &columnSource, const FfnPlan &plan,
    reference::ExpertPart part, bool roundToBF16, const PackedTensor *&levels,
    const PackedWidths *compact) {
  PackedQuantization q;
  q.roundToBF16 = roundToBF16;
  bool symmetric = true;
  if (auto intGroup = dyn_cast<IntGroupEncodingAttr>(encoding)) {
    q.bits = intGroup.getBits();
    q.groupSize = intGroup.getGroupSize();
    symmetric = intGroup.getSymmetric();
  } else if (auto fp8 = dyn_cast<Fp8BlockEncodingAttr>(encoding)) {
    q.format = LevelFormat::E4M3;
    q.groupSize = fp8.getBlockCols();
  } else {
    q.format = LevelFormat::E2M1;
    q.bits = 4;
    q.groupSize = 32;
    // An e2m1 value times a power of two is exact in bf16, so the rounding
    // the IR asks for changes nothing and the scale can apply per group.
    q.roundToBF16 = false;
  }
  q.groups = llvm::divideCeil(K, q.groupSize);
  // Codes are stored as they are: no shift, no zero points. The file says
  // what the bytes are: e4m3 values, e2m1 pairs, or integer levels.
  bool codes = q.format != LevelFormat::Int, nibbles = q.bits == 4;
  moe_dtype levelsType = q.format == LevelFormat::E4M3   ? MOE_DTYPE_F8_E4M3
                         : q.format == LevelFormat::E2M1 ? MOE_DTYPE_U8
                                                         : MOE_DTYPE_I8;
  int64_t G = q.groupSize;
  // Each expert's panels and K: all alike, or its own in the compact layout
  // (the first projection drops panels, the down projection k rows).
  bool down = part == reference::ExpertPart::Down;
  std::vector<int64_t> expertPanels(E, panels), expertK(E, K);
  if (compact && down)
    expertK = compact->downRows;
  else if (compact)
    expertPanels = compact->firstPanels;
  auto levelRows = [=](int64_t k) {
    return nibbles ? int64_t(llvm::divideCeil(k, 2)) : k;
  };
  auto shapeOf = [=](auto rowsOf) -> std::vector<int64_t> {
    if (!compact)
      return {E, panels, rowsOf(K), P};
    int64_t total = 0;
    for (int64_t e = 0; e < E; ++e)
      total += down ? rowsOf(expertK[e]) : expertPanels[e];
    if (down)
      return {panels * total, P};
    return {total, rowsOf(K), P};
  };
  // Each tensor walks every expert once, reading only its integer view.
  auto forEachExpert = [this, plan, E, part](const Emit &emit, auto body) {
    return streamExperts(*checkpoint, E, emit, body,
                         [&](reference::WeightMaterializer &source, int64_t e) {
                           return reference::loadExpertIntGroups(source, plan,
                                                                 e, part);
                         });
  };
  // Levels are stored as level - shift with zero point zero - shift, so
  // (stored - stored zero) = (level - zero). 4-bit levels become unsigned
  // nibbles (shift -8 when symmetric: [-8, 7] -> [0, 15]); 8-bit levels of an
  // expert read from unsigned storage ([0, 255]) are shifted by 128 into a
  // signed byte.
  using Values = reference::WeightMaterializer::IntGroupValues;
  auto shiftOf = [=](const Values &v) -> int {
    if (codes)
      return 0;
    if (nibbles)
      return symmetric ? -8 : 0;
    for (double level : v.levels.data)
      if (level > 127)
        return 128;
    return 0;
  };
  /// The shift of each of an expert's projections, found once per expert.
  struct Shifts {
    const reference::ExpertIntGroups &m;
    int gate = 0, up = 0, down = 0;
    int of(const Values *v) const {
      return v == &m.up ? up : v == &m.down ? down : gate;
    }
  };
  auto shiftsOf = [=](const reference::ExpertIntGroups &m) {
    Shifts shifts{m};
    if (m.gate)
      shifts.gate = shiftOf(*m.gate);
    if (part == reference::ExpertPart::Down)
      shifts.down = shiftOf(m.down);
    else
      shifts.up = shiftOf(m.up);
    return shifts;
  };
  auto stored = [=](const Values *v, const Shifts &shifts, int64_t row,
                    int64_t k) -> int {
    if (!v || k >= v->levels.dim(1))
      return 0; // padding: its scale and offset are zero
    return int(v->levels.row(row)[k]) - shifts.of(v);
  };
  levels = declare(name, levelsType, shapeOf(levelRows), [=](const Emit &emit) {
    return forEachExpert(emit, [&](const reference::ExpertIntGroups &m,
                                   std::vector<uint8_t> &bytes, int64_t e) {
      Shifts shifts = shiftsOf(m);
      int64_t expertRows = expertK[e];
      for (int64_t p = 0; p < expertPanels[e]; ++p)
        for (int64_t k = 0; k < expertRows; k += nibbles ? 2 : 1)
          for (int64_t c = 0; c < P; ++c) {
            int64_t row;
            const auto *v = columnSource(m, p, c, row);
            // An odd compact K leaves the last byte's high nibble unused.
            if (nibbles)
              bytes.push_back(uint8_t((stored(v, shifts, row, k) & 0xF) |
                                      (k + 1 < expertRows
                                           ? stored(v, shifts, row, k + 1) << 4
                                           : 0)));
            else
              bytes.push_back(uint8_t(int8_t(stored(v, shifts, row, k))));
          }
    });
  });
  auto scaleOrZero = [=](const Values *v, const Shifts &shifts, int64_t row,
                         int64_t g, bool zeroPoint) -> double {
    if (!v || g * G >= v->levels.dim(1))
      return 0.0; // padding: a zero scale makes every level zero
    if (!zeroPoint)
      return v->scales.row(row)[g];
    double zero = symmetric ? 0.0 : v->zeros.row(row)[g];
    return zero - shifts.of(v);
  };
  auto groupTensor = [&](const std::string &suffix, bool zeroPoint) {
    auto groupsOf = [=](int64_t k) { return int64_t(llvm::divideCeil(k, G)); };
    return declare(
        name + suffix, MOE_DTYPE_F32, shapeOf(groupsOf),
        [=](const Emit &emit) {
          return forEachExpert(emit, [&](const reference::ExpertIntGroups &m,
                                         std::vector<uint8_t> &bytes,
                                         int64_t e) {
            Shifts shifts = shiftsOf(m);
            for (int64_t p = 0; p < expertPanels[e]; ++p)
              for (int64_t g = 0; g < groupsOf(expertK[e]); ++g)
                for (int64_t c = 0; c < P; ++c) {
                  int64_t row;
                  const auto *v = columnSource(m, p, c, row);
                  append(bytes, MOE_DTYPE_F32,
                         scaleOrZero(v, shifts, row, g, zeroPoint));
                }
          });
        });
  };
  q.scales = groupTensor(".scales", false);
  if (!codes && (nibbles || !symmetric))
    q.zeros = groupTensor(".zeros", true);
  return q;
}

PackedLatent WeightPacker::planLatent(
    const std::string &prefix, const LatentPlan &latent, const FfnPlan &ffn,
    int64_t hidden, int64_t panels1, const PackedTensor *&factors,
    std::optional<PackedQuantization> &factorsQuantization) {
  int64_t P = options.panelWidth, R = latent.rank, groups = latent.groups;
  int64_t E = ffn.numExperts, width = ffn.width;
  int64_t parts = int64_t(latent.factors.size());
  PackedLatent packed;
  packed.rank = R;
  packed.groups = groups;
  packed.expertsPerGroup = E / groups;
  packed.panels = llvm::divideCeil(parts * R, P);
  packed.widthPadded = packed.panels * P;
  packed.upColumn = latent.up.factorization * R;
  int64_t panels = packed.panels;
  LatentPlan plan = latent;
  // One materializer per factorization: each keeps its own group's SVD, so
  // reading gate's and up's factors in turn computes each group's once.
  auto materializers = [this, parts] {
    std::vector<reference::WeightMaterializer> sources;
    for (int64_t i = 0; i < parts; ++i)
      sources.emplace_back(*checkpoint);
    return sources;
  };
  // Factors or bases that moe-quantize-experts quantized keep their levels
  // when all of them share one #moe.int_group encoding whose groups tile K.
  auto keptEncoding = [&](ArrayRef<Value> values,
                          int64_t K) -> IntGroupEncodingAttr {
    if (!options.keepIntGroups || options.expertsAsBF16)
      return {};
    IntGroupEncodingAttr common;
    for (Value value : values) {
      IntGroupEncodingAttr encoding =
          reference::WeightMaterializer::getIntGroupEncoding(value);
      if (!encoding || (common && encoding != common))
        return {};
      common = encoding;
    }
    if (K % common.getGroupSize() != 0 || (common.getBits() == 4 && K % 2))
      return {};
    return common;
  };
  // The integer levels are read through loadExpertIntGroups: a plan whose
  // gate and up are the first and last factorization's values (read whole,
  // never split as a fused weight would be).
  auto levelsPlan = [&](ArrayRef<Value> values, int64_t count) {
    FfnPlan levels = ffn;
    levels.gate = values.front();
    levels.up = values.back();
    levels.numExperts = count;
    return levels;
  };
  using IntGroupValues = reference::WeightMaterializer::IntGroupValues;
  // Column n of group g's z: row n % R of factorization n / R's basis.
  if (IntGroupEncodingAttr encoding = keptEncoding(latent.bases, hidden)) {
    packed.basisQuantization = planQuantized(
        prefix + "latent_basis", encoding, groups, panels, hidden, P,
        [=](const reference::ExpertIntGroups &m, int64_t p, int64_t c,
            int64_t &row) -> const IntGroupValues * {
          int64_t n = p * P + c;
          if (n >= parts * R)
            return nullptr;
          row = n % R;
          return n / R == 0 ? &*m.gate : &m.up;
        },
        levelsPlan(plan.bases, groups), reference::ExpertPart::First,
        cast<RankedTensorType>(latent.bases[0].getType())
            .getElementType()
            .isBF16(),
        packed.basis);
  } else {
    moe_dtype basisType = packedType(latent.bases[0]);
    packed.basis = declare(
        prefix + "latent_basis", basisType, {groups, panels, hidden, P},
        [=](const Emit &emit) {
          std::vector<reference::WeightMaterializer> sources = materializers();
          for (int64_t g = 0; g < groups; ++g) {
            SmallVector<RefTensor, 2> bases;
            for (int64_t i = 0; i < parts; ++i) {
              FailureOr<RefTensor> basis = sources[i].get(plan.bases[i], g);
              if (failed(basis))
                return failure();
              bases.push_back(std::move(*basis));
            }
            std::vector<uint8_t> bytes;
            for (int64_t p = 0; p < panels; ++p)
              for (int64_t k = 0; k < hidden; ++k)
                for (int64_t c = 0; c < P; ++c) {
                  int64_t n = p * P + c;
                  append(bytes, basisType,
                         n < parts * R ? bases[n / R].row(n % R)[k] : 0.0);
                }
            emit(bytes);
          }
          return success();
        });
  }
  // Column c of panel p of the first projection: gate row j (c < P/2) or up
  // row j, as planFfn lays the product out; its K rows are that row of A.
  bool gated = bool(latent.gate);
  auto factorRow = [=](int64_t p, int64_t c, bool &isGate) {
    isGate = gated && c < P / 2;
    return gated ? p * (P / 2) + (isGate ? c : c - P / 2) : p * P + c;
  };
  if (IntGroupEncodingAttr encoding = keptEncoding(latent.factors, R)) {
    SmallVector<Value, 2> sources{
        plan.factors[gated ? plan.gate->factorization : plan.up.factorization],
        plan.factors[plan.up.factorization]};
    factorsQuantization = planQuantized(
        prefix + "w1", encoding, E, panels1, R, P,
        [=](const reference::ExpertIntGroups &m, int64_t p, int64_t c,
            int64_t &row) -> const IntGroupValues * {
          bool isGate;
          int64_t j = factorRow(p, c, isGate);
          if (j >= width)
            return nullptr;
          row = (isGate ? plan.gate->firstRow : plan.up.firstRow) + j;
          return isGate ? &*m.gate : &m.up;
        },
        levelsPlan(sources, E), reference::ExpertPart::First,
        cast<RankedTensorType>(latent.factors[0].getType())
            .getElementType()
            .isBF16(),
        factors);
    return packed;
  }
  moe_dtype factorsType = packedType(latent.factors[0]);
  factors = declare(
      prefix + "w1", factorsType, {E, panels1, R, P}, [=](const Emit &emit) {
        std::vector<reference::WeightMaterializer> sources = materializers();
        for (int64_t e = 0; e < E; ++e) {
          SmallVector<RefTensor, 2> a;
          for (int64_t i = 0; i < parts; ++i) {
            FailureOr<RefTensor> factor = sources[i].get(plan.factors[i], e);
            if (failed(factor))
              return failure();
            a.push_back(std::move(*factor));
          }
          std::vector<uint8_t> bytes;
          for (int64_t p = 0; p < panels1; ++p)
            for (int64_t k = 0; k < R; ++k)
              for (int64_t c = 0; c < P; ++c) {
                bool isGate = gated && c < P / 2;
                int64_t j =
                    gated ? p * (P / 2) + (isGate ? c : c - P / 2) : p * P + c;
                const LatentPlan::Source &source =
                    isGate ? *plan.gate : plan.up;
                append(bytes, factorsType,
                       j < width
                           ? a[source.factorization].row(source.firstRow + j)[k]
                           : 0.0);
              }
          emit(bytes);
        }
        return success();
      });
  return packed;
}

FailureOr<PackedFfn> WeightPacker::planFfn(const std::string &prefix,
                                           const FfnPlan &ffn, int64_t hidden,
                                           const LatentPlan *latent,
                                           ArrayRef<int64_t> widths) {
  PackedFfn packed;
  packed.numExperts = ffn.numExperts;
  packed.hidden = hidden;
  packed.width = ffn.width;
  packed.gated = ffn.ffn.isGated();
  packed.ffn = ffn.ffn;
  int64_t P = options.panelWidth;
  int64_t hiddenRows = llvm::alignTo(hidden, options.kRowMultiple);
  packed.hiddenRows = hiddenRows;
  int64_t columnsPerPanel = packed.gated ? P / 2 : P;
  packed.panels1 = llvm::divideCeil(ffn.width, columnsPerPanel);
  packed.widthPadded = packed.panels1 * columnsPerPanel;
  packed.panels2 = llvm::divideCeil(hidden, P);
  packed.hiddenPadded = packed.panels2 * P;
  moe_dtype dtype = options.expertsAsBF16 ? MOE_DTYPE_BF16 : packedType(ffn.up);
  moe_dtype downType =
      options.expertsAsBF16 ? MOE_DTYPE_BF16 : packedType(ffn.down);
  bool anyBias1 = ffn.upBias || ffn.gateBias;
  int64_t E = ffn.numExperts, width = ffn.width;
  bool gated = packed.gated;
  FfnPlan plan = ffn;
  int64_t panels1 = packed.panels1, panels2 = packed.panels2,
          kPad = packed.widthPadded;
  // Experts of different widths keep only the panels and k rows their widths
  // reach (PackedWidths); latent factors keep planLatent's layout.
  if (options.compactWidths && !widths.empty() && !latent) {
    PackedWidths compact;
    for (int64_t expertWidth : widths) {
      compact.firstPanels.push_back(
          llvm::divideCeil(expertWidth, columnsPerPanel));
      compact.downRows.push_back(expertWidth);
    }
    packed.compact = std::move(compact);
  }
  const PackedWidths *compact = packed.compact ? &*packed.compact : nullptr;
  // Each expert's panels of w1 and k rows of w2, and the tensors' shapes.
  std::vector<int64_t> firstPanels(E, panels1), downRows(E, kPad);
  std::vector<int64_t> w1Shape = {E, panels1, hiddenRows, P},
                       w2Shape = {E, panels2, kPad, P};
  if (compact) {
    firstPanels = compact->firstPanels;
    downRows = compact->downRows;
    w1Shape = {llvm::sum_of(firstPanels), hiddenRows, P};
    w2Shape = {panels2 * llvm::sum_of(downRows), P};
  }

  // Column c of panel p of the first projection: gate row j (c < P/2) or up row
  // j.
  auto firstRow = [=](int64_t p, int64_t c, bool &isGate) {
    isGate = gated && c < P / 2;
    return gated ? p * (P / 2) + (isGate ? c : c - P / 2) : p * P + c;
  };
  auto forEachExpert = [this, plan, E](const Emit &emit,
                                       reference::ExpertPart part, auto body) {
    return streamExperts(*checkpoint, E, emit, body,
                         [&](reference::WeightMaterializer &source, int64_t e) {
                           return reference::loadExpertMatrices(source, plan, e,
                                                                part);
                         });
  };

  // Integer levels kept for the kernels when the projection is stored with
  // one int_group encoding (gate and up alike).
  IntGroupEncodingAttr int1, int2;
  if (options.keepIntGroups && !options.expertsAsBF16) {
    int1 = reference::WeightMaterializer::getIntGroupEncoding(ffn.up);
    if (ffn.gate &&
        reference::WeightMaterializer::getIntGroupEncoding(ffn.gate) != int1)
      int1 = {};
    int2 = reference::WeightMaterializer::getIntGroupEncoding(ffn.down);
  }
  // What each projection keeps: int_group levels, else fp8/mxfp4 codes.
  Attribute kept1, kept2;
  if (int1 && hiddenRows % int1.getGroupSize() == 0 && hiddenRows % 2 == 0)
    kept1 = int1;
  if (int2 && kPad % 2 == 0)
    kept2 = int2;
  if (options.keepIntGroups && !options.expertsAsBF16) {
    if (!kept1)
      kept1 = floatCodesKept(ffn.up, ffn.gate, hiddenRows);
    if (!kept2)
      kept2 = floatCodesKept(ffn.down, Value(), kPad);
  }
  if (latent)
    packed.latent =
        planLatent(prefix, *latent, ffn, hidden, panels1, packed.w1, packed.q1);
  else if (kept1)
    packed.q1 = planQuantized(
        prefix + "w1", kept1, E, panels1, hiddenRows, P,
        [=](const reference::ExpertIntGroups &m, int64_t p, int64_t c,
            int64_t &row)
            -> const reference::WeightMaterializer::IntGroupValues * {
          bool isGate;
          row = firstRow(p, c, isGate);
          if (row >= width)
            return nullptr;
          return isGate ? &*m.gate : &m.up;
        },
        plan, reference::ExpertPart::First,
        cast<RankedTensorType>(ffn.up.getType()).getElementType().isBF16(),
        packed.w1, compact);
  else
    packed.w1 = declare(
        prefix + "w1", dtype, w1Shape, [=](const Emit &emit) {
          return forEachExpert(
              emit, reference::ExpertPart::First,
              [&](reference::ExpertMatrices &m, std::vector<uint8_t> &bytes,
                  int64_t e) {
                for (int64_t p = 0; p < firstPanels[e]; ++p)
                  for (int64_t k = 0; k < hiddenRows; ++k)
                    for (int64_t c = 0; c < P; ++c) {
                      bool isGate;
                      int64_t j = firstRow(p, c, isGate);
                      const RefTensor &w = isGate ? *m.gate : m.up;
                      append(bytes, dtype,
                             j < width && k < hidden ? w.row(j)[k] : 0.0);
                    }
              });
        });
  if (anyBias1)
    packed.b1 = declare(
        prefix + "b1", MOE_DTYPE_F32, {E, panels1 * P}, [=](const Emit &emit) {
          return forEachExpert(
              emit, reference::ExpertPart::FirstBias,
              [&](reference::ExpertMatrices &m, std::vector<uint8_t> &bytes) {
                for (int64_t p = 0; p < panels1; ++p)
                  for (int64_t c = 0; c < P; ++c) {
                    bool isGate;
                    int64_t j = firstRow(p, c, isGate);
                    const std::optional<RefTensor> &b =
                        isGate ? m.gateBias : m.upBias;
                    append(bytes, MOE_DTYPE_F32,
                           j < width && b ? b->data[j] : 0.0);
                  }
              });
        });
  if (kept2)
    packed.q2 = planQuantized(
        prefix + "w2", kept2, E, panels2, kPad, P,
        [=](const reference::ExpertIntGroups &m, int64_t p, int64_t c,
            int64_t &row)
            -> const reference::WeightMaterializer::IntGroupValues * {
          row = p * P + c;
          return row < hidden ? &m.down : nullptr;
        },
        plan, reference::ExpertPart::Down,
        cast<RankedTensorType>(ffn.down.getType()).getElementType().isBF16(),
        packed.w2, compact);
  else
    packed.w2 = declare(
        prefix + "w2", downType, w2Shape, [=](const Emit &emit) {
          return forEachExpert(
              emit, reference::ExpertPart::Down,
              [&](reference::ExpertMatrices &m, std::vector<uint8_t> &bytes,
                  int64_t e) {
                for (int64_t p = 0; p < panels2; ++p)
                  for (int64_t k = 0; k < downRows[e]; ++k)
                    for (int64_t c = 0; c < P; ++c) {
                      int64_t n = p * P + c;
                      append(bytes, downType,
                             n < hidden && k < width ? m.down.row(n)[k] : 0.0);
                    }
              });
        });
  if (ffn.downBias)
    packed.b2 = declare(
        prefix + "b2", MOE_DTYPE_F32, {E, panels2 * P}, [=](const Emit &emit) {
          return forEachExpert(
              emit, reference::ExpertPart::DownBias,
              [&](reference::ExpertMatrices &m, std::vector<uint8_t> &bytes) {
                for (int64_t n = 0; n < panels2 * P; ++n)
                  append(bytes, MOE_DTYPE_F32,
                         n < hidden ? m.downBias->data[n] : 0.0);
              });
        });
  return packed;
}

FailureOr<PackedLayer> WeightPacker::planLayer(const LayerPlan &plan) {
  std::string prefix = "layer" + std::to_string(plan.layerIndex) + ".";
  PackedLayer packed;
  // Small f32 tensors copied whole: router, its biases, the shared expert's
  // gate.
  auto whole = [&](Value value, std::string name) -> const PackedTensor * {
    auto type = cast<RankedTensorType>(value.getType());
    std::vector<int64_t> shape(type.getShape().begin(), type.getShape().end());
    return declare(prefix + name, MOE_DTYPE_F32, shape,
                   [this, value](const Emit &emit) {
                     reference::WeightMaterializer source(*checkpoint);
                     FailureOr<RefTensor> t = source.get(value, -1);
                     if (failed(t))
                       return failure();
                     std::vector<uint8_t> bytes;
                     for (double v : t->data)
                       append(bytes, MOE_DTYPE_F32, v);
                     emit(bytes);
                     return success();
                   });
  };
  packed.router = whole(plan.routerWeight, "router");
  if (plan.routerBias)
    packed.routerBias = whole(plan.routerBias, "router_bias");
  if (plan.correctionBias)
    packed.correctionBias = whole(plan.correctionBias, "correction_bias");
  if (plan.sharedSigmoidGate)
    packed.sigmoidGate = whole(plan.sharedSigmoidGate, "shared_gate");
  FailureOr<PackedFfn> experts =
      planFfn(prefix + "experts.", plan.experts, plan.hidden,
              options.latentExperts && plan.latent ? &*plan.latent : nullptr,
              plan.expertWidths);
  if (failed(experts))
    return failure();
  packed.experts = *experts;
  if (plan.shared) {
    FailureOr<PackedFfn> shared =
        planFfn(prefix + "shared.", *plan.shared, plan.hidden);
    if (failed(shared))
      return failure();
    packed.shared = *shared;
  }
  return packed;
}

FailureOr<std::string> WeightPacker::write(llvm::StringRef path,
                                           Location errorLoc) {
  // The hash covers the data, which is written after the header: the header
  // carries a placeholder of the same length, patched once the data is hashed.
  if (!checkpoint)
    return emitError(errorLoc) << "no checkpoint to read the weights from",
           failure();
  const std::string placeholder(64, '0');
  ::moe::SafetensorsWriter writer(path.str());
  for (const auto &tensor : tensors)
    if (llvm::Error error =
            writer.declare(tensor->name, tensor->dtype, tensor->shape))
      return emitError(errorLoc) << llvm::toString(std::move(error)), failure();
  writer.setMetadata("moec_weights_hash", placeholder);
  llvm::SHA256 hasher;
  llvm::Error writeError = llvm::Error::success();
  for (const Producer &producer : producers) {
    LogicalResult produced = producer([&](llvm::ArrayRef<uint8_t> bytes) {
      hasher.update(bytes);
      if (!writeError)
        writeError = writer.write(bytes);
    });
    if (failed(produced))
      return failure();
  }
  if (writeError)
    return emitError(errorLoc) << llvm::toString(std::move(writeError)),
           failure();
  if (llvm::Error error = writer.finish())
    return emitError(errorLoc) << llvm::toString(std::move(error)), failure();

  std::array<uint8_t, 32> digest = hasher.final();
  std::string hash;
  for (uint8_t byte : digest) {
    static const char hex[] = "0123456789abcdef";
    hash += hex[byte >> 4];
    hash += hex[byte & 15];
  }
  // Patch the placeholder inside the header.
  FILE *stream = std::fopen(path.str().c_str(), "r+b");
  if (!stream)
    return emitError(errorLoc)
               << "cannot reopen " << path << " to record its hash",
           failure();
  uint64_t headerLength = 0;
  std::string header;
  bool ok =
      std::fread(&headerLength, 8, 1, stream) == 1 && headerLength < (1u << 30);
  if (ok) {
    header.resize(headerLength);
    ok = std::fread(header.data(), 1, headerLength, stream) == headerLength;
  }
  size_t at = ok ? header.find(placeholder) : std::string::npos;
  ok = at != std::string::npos &&
       std::fseek(stream, long(8 + at), SEEK_SET) == 0 &&
       std::fwrite(hash.data(), 1, hash.size(), stream) == hash.size();
  ok = (std::fclose(stream) == 0) && ok;
  if (!ok)
    return emitError(errorLoc) << "cannot record the weights hash in " << path,
           failure();
  return hash;
}
