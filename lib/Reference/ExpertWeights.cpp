//===- ExpertWeights.cpp - one expert's matrices from weight values -------===//
//
// The expert-level reads of the weight materializer: an expert's gate, up and
// down (split out of fused layouts) as float64 matrices or integer levels.
//
//===----------------------------------------------------------------------===//

#include "lib/Reference/WeightMaterializer.h"

#include "lib/Reference/Kernels.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::reference;

FfnValues FfnValues::get(FfnAttr ffn, Value gate, Value up, Value down,
                         Value gateBias, Value upBias, Value downBias,
                         bool stacked) {
  FfnValues values;
  values.ffn = ffn;
  values.gate = gate;
  values.up = up;
  values.down = down;
  values.gateBias = gateBias;
  values.upBias = upBias;
  values.downBias = downBias;
  values.stacked = stacked;
  auto upType = cast<RankedTensorType>(up.getType());
  values.numExperts = stacked ? upType.getDimSize(0) : 1;
  int64_t rows = upType.getDimSize(upType.getRank() - 2);
  values.width = ffn.isFused() ? rows / 2 : rows;
  return values;
}

namespace {

/// Rows `rows` (every other row from `first` when `step` is 2) of a [R, C] or
/// [R] tensor.
RefTensor takeRows(const RefTensor &t, int64_t first, int64_t count,
                   int64_t step) {
  int64_t cols = t.rank() == 2 ? t.dim(1) : 1;
  RefTensor result(t.rank() == 2 ? SmallVector<int64_t>{count, cols}
                                 : SmallVector<int64_t>{count});
  for (int64_t r = 0; r < count; ++r)
    std::copy_n(t.data.data() + (first + r * step) * cols, cols,
                result.data.data() + r * cols);
  return result;
}

} // namespace

FailureOr<ExpertMatrices>
reference::loadExpertMatrices(WeightMaterializer &source, const FfnValues &ffn,
                              int64_t expert, ExpertPart part) {
  int64_t e = ffn.stacked ? expert : -1;
  auto get = [&](Value v, bool wanted) -> FailureOr<std::optional<RefTensor>> {
    if (!v || !wanted)
      return std::optional<RefTensor>();
    FailureOr<RefTensor> t = source.get(v, e);
    if (failed(t))
      return failure();
    return std::optional<RefTensor>(std::move(*t));
  };
  bool all = part == ExpertPart::All;
  bool first = all || part == ExpertPart::First,
       firstBias = all || part == ExpertPart::FirstBias;
  // A fused first projection's bias is split like its weight, so both halves
  // come through `up`.
  auto up = get(ffn.up, first),
       down = get(ffn.down, all || part == ExpertPart::Down),
       gate = get(ffn.gate, first), upBias = get(ffn.upBias, firstBias),
       downBias = get(ffn.downBias, all || part == ExpertPart::DownBias),
       gateBias = get(ffn.gateBias, firstBias);
  if (failed(up) || failed(down) || failed(gate) || failed(upBias) ||
      failed(downBias) || failed(gateBias))
    return failure();
  ExpertMatrices m{*gate,
                   *gateBias,
                   *up ? std::move(**up) : RefTensor(),
                   *down ? std::move(**down) : RefTensor(),
                   *upBias,
                   *downBias};
  int64_t width = ffn.width;
  // Fused layouts split into the separate gate and up the kernels pack side by
  // side.
  if (ffn.ffn.getGlu() == GluLayout::Halves ||
      ffn.ffn.getGlu() == GluLayout::Interleaved) {
    bool halves = ffn.ffn.getGlu() == GluLayout::Halves;
    if (first) {
      RefTensor fused = std::move(m.up);
      m.gate = takeRows(fused, 0, width, halves ? 1 : 2);
      m.up = takeRows(fused, halves ? width : 1, width, halves ? 1 : 2);
    }
    if (m.upBias) {
      RefTensor bias = std::move(*m.upBias);
      m.gateBias = takeRows(bias, 0, width, halves ? 1 : 2);
      m.upBias = takeRows(bias, halves ? width : 1, width, halves ? 1 : 2);
    }
  }
  return m;
}

FailureOr<ExpertIntGroups>
reference::loadExpertIntGroups(WeightMaterializer &source, const FfnValues &ffn,
                               int64_t expert, ExpertPart part) {
  int64_t e = ffn.stacked ? expert : -1;
  ExpertIntGroups result;
  if (part == ExpertPart::Down) {
    FailureOr<WeightMaterializer::IntGroupValues> down =
        source.getIntGroup(ffn.down, e);
    if (failed(down))
      return failure();
    result.down = std::move(*down);
    return result;
  }
  FailureOr<WeightMaterializer::IntGroupValues> up =
      source.getIntGroup(ffn.up, e);
  if (failed(up))
    return failure();
  if (ffn.gate) {
    FailureOr<WeightMaterializer::IntGroupValues> gate =
        source.getIntGroup(ffn.gate, e);
    if (failed(gate))
      return failure();
    result.gate = std::move(*gate);
    result.up = std::move(*up);
    return result;
  }
  GluLayout glu = ffn.ffn.getGlu();
  if (glu != GluLayout::Halves && glu != GluLayout::Interleaved) {
    result.up = std::move(*up);
    return result;
  }
  // A fused first projection splits into gate and up rows, with their
  // scales and zero points.
  bool halves = glu == GluLayout::Halves;
  int64_t width = ffn.width;
  auto split = [&](const WeightMaterializer::IntGroupValues &fused,
                   bool gatePart) {
    int64_t first = gatePart ? 0 : (halves ? width : 1);
    int64_t step = halves ? 1 : 2;
    WeightMaterializer::IntGroupValues half;
    half.levels = takeRows(fused.levels, first, width, step);
    half.scales = takeRows(fused.scales, first, width, step);
    if (!fused.zeros.shape.empty())
      half.zeros = takeRows(fused.zeros, first, width, step);
    return half;
  };
  result.gate = split(*up, true);
  result.up = split(*up, false);
  return result;
}
