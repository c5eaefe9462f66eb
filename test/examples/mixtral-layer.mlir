// The README's main job: the bundled Mixtral layer verifies and decomposes.
// RUN: moe-opt %examples/mixtral_layer.mlir --moe-explicit | FileCheck %s

// CHECK-LABEL: func.func @layer_0
// CHECK-SAME:    (%[[X:.*]]: tensor<?x1024xbf16>)
// CHECK-DAG:   %[[WG:.*]] = moe.weight "model.layers.0.block_sparse_moe.gate.weight" : tensor<8x1024xbf16>
// CHECK-DAG:   %[[W1:.*]] = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w1.weight" experts(8)
// CHECK-DAG:   %[[W3:.*]] = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w3.weight" experts(8)
// CHECK-DAG:   %[[W2:.*]] = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w2.weight" experts(8)
// CHECK:       %[[IDS:.*]], %[[W:.*]] = moe.route #moe.routing<scoring = softmax, k = 2, normalize = true, logits_type = f32> %[[X]], %[[WG]]
// CHECK:       %[[PX:.*]], %{{.*}}, %[[SLOTS:.*]], %[[OFF:.*]] = moe.dispatch %[[X]], %[[IDS]], %[[W]]
// CHECK-SAME:    -> (tensor<?x1024xbf16>, tensor<?xf32>, tensor<?xi32>, tensor<9xi32>)
// CHECK:       %[[Y:.*]] = moe.experts #moe.ffn<activation = silu> %[[PX]], %[[OFF]] gate %[[W1]] up %[[W3]] down %[[W2]]
// CHECK:       %[[OUT:.*]] = moe.combine %[[Y]], %[[SLOTS]], %[[W]] :
// CHECK:       return %[[OUT]]
