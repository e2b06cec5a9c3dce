#pragma once
// Score: what the evaluator measured of one candidate on one split, a value the policies, the
// archive and the report read (docs/semantics.md, "Predictions and scores").
#include "evaluator/data/dataset.h"
#include "evaluator/ir/costs.h"
#include "evaluator/ir/execution_path.h"

#include <cstdint>

namespace mps {

struct Score {
    double accuracy_percent = 0.0; // top-1 (argmax, first index on ties)
    double mean_loss = 0.0;        // mean cross-entropy
    // Divergence from the FP32 network (the W32A32 policy on the same images), for
    // sensitivity metrics: mean over images of KL(softmax(fp32 logits) || softmax(logits)), and
    // the SQNR of the logits, 10 log10(sum fp32^2 / sum (logits - fp32)^2) in dB (+infinity when
    // the logits equal the FP32 ones).
    double mean_kl = 0.0;
    double logit_sqnr_db = 0.0;
    int64_t correct = 0;
    int64_t images = 0;
    Split split = Split::validation;
    Costs costs;                   // BitOPs, weight bytes, MACs, FLOPs, peak activations
    double seconds = 0.0;          // time spent on this candidate's forward passes (all workers)
    ExecutionPath path = ExecutionPath::integer;
};

} // namespace mps
