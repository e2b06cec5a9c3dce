#pragma once
// The model zoo: the four small CNN architectures mpsearch trains on Fashion-MNIST, built as
// freshly initialized graphs (evaluator/ir/graph.h) ready for evaluator/train/trainer.h.
//
// Every architecture reads a 1x28x28 image and writes 10 logits. Convs followed by batch norm have
// no bias; the batch_norm nodes are kept (unfolded), gamma = 1, beta = 0, running mean 0, var 1,
// and each sits right after its conv so fold_batch_norm() can fold it after training.
//
//   lenet5         conv5x5 1->6 pad 2, ReLU, maxpool 2; conv5x5 6->16, ReLU, maxpool 2;
//                  fc 400->120, ReLU; fc 120->84, ReLU; fc 84->10 (convs and fcs with bias)
//   vgg_small      [conv3x3 pad 1 + BN + ReLU] 1->32, 32->32, maxpool 2; 32->64, 64->64,
//                  maxpool 2; 64->128, maxpool 2; fc 1152->256, ReLU; fc 256->10
//   resnet8        conv3x3 1->16 + BN + ReLU; basic blocks 16->16 (stride 1), 16->32 (stride 2),
//                  32->64 (stride 2): conv3x3+BN+ReLU, conv3x3+BN, 1x1 conv+BN projection when the
//                  shape changes, add, ReLU; global average pool; fc 64->10
//   mobilenet_tiny conv3x3 1->16 + BN + ReLU6; depthwise-separable blocks (dw3x3 + BN + ReLU6,
//                  pw1x1 + BN + ReLU6; the stride is on the depthwise conv) 16->32 /2, 32->64 /2,
//                  64->64, 64->128; global average pool; fc 128->10
//
// Node names: conv1, conv1_bn, conv1_relu, pool1, flatten, fc1, fc1_relu, ...; residual blocks
// block1_conv1, block1_conv1_bn, ..., block2_proj, block2_proj_bn, block2_add, block2_relu;
// mobilenet blocks block1_dw, block1_dw_bn, block1_dw_relu6, block1_pw, ... . The graph input
// value is "input", the logits value "output"; other values are named after their node.
//
// Initialization: weights of conv and fully connected layers are Kaiming (He) uniform,
// U(-sqrt(6 / fan_in), +sqrt(6 / fan_in)), fan_in = input channels per group * kernel area;
// biases are zero. The numbers come from std::mt19937_64(seed) converted to floats by our own
// code, so the same seed gives the same weights with every standard library.
#include "evaluator/ir/graph.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mps {

// "lenet5", "vgg_small", "resnet8", "mobilenet_tiny".
std::vector<std::string> architecture_names();

// A freshly initialized graph with shapes inferred. Throws mps::Error listing the known names when
// `name` is not one of them.
Graph make_architecture(const std::string& name, uint64_t seed);

} // namespace mps
