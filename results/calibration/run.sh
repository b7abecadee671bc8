#!/usr/bin/env bash
# Reproduces results/calibration/ (issue 15): the seed-replicated digits-cnn study, the calibrations
# (the default pipeline and one changed assumption at a time), the validation table and figures.
# Run from the repository root after ./dev.sh setup (or with the venv active); under `nice` on a
# shared machine.  Wall times on the 2 shared cores: study ~40 min, each sgd/momentum calibration
# 3-8 min, the default (measured adam/kfac) calibration ~20 min, mnist1d-cnn ~40 min.
set -euo pipefail
B=".venv/bin/batchlab"
R=results/calibration

# 1. the measurement: SGD, momentum, Adam, K-FAC on digits-cnn, 7 batch sizes, 5 replication seeds per cell
$B study run studies/calibration-digits.toml --out runs/calibration-digits
mkdir -p $R/digits/study && sqlite3 runs/calibration-digits/study.sqlite ".backup $R/digits/study/study.sqlite"
$B study export runs/calibration-digits --out $R/digits/study-export && rm $R/digits/study-export/curves.csv

# 2. the calibrated NQM, default pipeline (measured Adam and K-FAC preconditioners), seed 0
$B calibrate --workload digits-cnn --out $R/digits/default
# ... the former H^-p proxies for Adam and K-FAC
$B calibrate --workload digits-cnn --preconditioner proxy --out $R/digits/proxy
# one assumption at a time (sgd and momentum)
C="$B calibrate --workload digits-cnn --optimizers sgd,momentum"
$C --seed 1 --out $R/digits/seed1                          # the calibration's own seed noise
$C --bulk-noise total --out $R/digits/bulk-total             # bulk noise model c = r h, r from tr Σ
$C --bulk-noise top-k --out $R/digits/bulk-topk              # ... r from the top-k ratio
$C --at-step 12 --out $R/digits/at-step-12                   # an earlier checkpoint
$C --at-step 24 --out $R/digits/at-step-24
$C --reference-optimizer momentum --out $R/digits/reference-momentum   # momentum's own trajectory and target loss
$C --curvature hessian --out $R/digits/hessian               # Hessian instead of Gauss-Newton
# sharpness along the SGD reference trajectory (lr 0.464, B 128): top eigenvalues at steps 0 and 4
for s in 0 4; do
  $B calibrate --workload digits-cnn --optimizers sgd --at-step $s --reference-tune 0 \
    --reference-hp learning_rate=0.464158883361278 --reference-seeds 1 --top-k 4 --slq-probes 2 --slq-steps 16 \
    --out $R/digits/trajectory-step-$s
done
# a stability cap from a sharper direction (zero-risk), on the default NQM
PYTHONPATH=src .venv/bin/python benchmarks/calibration_stability_cap.py $R/digits/default/nqm_problem.json 8 16.7 33.7 \
  > $R/digits/stability_cap.txt

# 3. mnist1d-cnn (the paper-mnist1d study's workload and target; the study: studies/paper-mnist1d.toml,
#    its finished store results/paper-mnist1d/study/study.sqlite, commands in results/paper-mnist1d/README.md)
#    the H^-p proxies, with the reference learning rate tuned over the 13-rate grid (~30 min):
$B calibrate --workload mnist1d-cnn --option num_samples=20000 --preconditioner proxy \
  --batch-sizes 4,16,64,256,1024,2048,4096,16384 --out $R/mnist1d/proxy
#    measured Adam and K-FAC preconditioners (~8 min).  The reference runs are not re-tuned: the SGD rate
#    is the one the proxy run's tuning picked (0.464, so sgd and momentum are identical to the proxy's);
#    Adam's and K-FAC's are the rates their tuning picked on digits-cnn (0.01 and 0.0281, grid points of
#    their tuning grids), both of which reach the target at B = 128 on mnist1d-cnn too.
$B calibrate --workload mnist1d-cnn --option num_samples=20000 --reference-tune 0 \
  --reference-hp learning_rate=0.464158883361278 --adam-hp learning_rate=0.01 \
  --kfac-hp learning_rate=0.028106095837193416 \
  --batch-sizes 4,16,64,256,1024,2048,4096,16384 --out $R/mnist1d/measured

#    sharpness along the mnist1d SGD reference (lr 0.464, B 128): top eigenvalues at steps 0, 10, 50, 150
for s in 0 10 50 150; do
  $B calibrate --workload mnist1d-cnn --option num_samples=20000 --optimizers sgd --at-step $s --reference-tune 0 \
    --reference-hp learning_rate=0.464158883361278 --reference-seeds 1 --top-k 4 --slq-probes 2 --slq-steps 16 \
    --batch-sizes 16,64,256,1024,2048 --out $R/mnist1d/trajectory-step-$s
done
#    the stability cap on the second workload (λ₁ at init 12.4, the largest seen 16.8)
PYTHONPATH=src .venv/bin/python benchmarks/calibration_stability_cap.py $R/mnist1d/measured/nqm_problem.json 6.2 12.4 16.8 \
  > $R/mnist1d/stability_cap.txt

# 4. the table and figures: digits-cnn (every variant) and mnist1d-cnn (measured and proxy)
V=""
for c in default proxy seed1 bulk-total bulk-topk at-step-12 at-step-24 reference-momentum hessian; do
  V="$V $R/digits/study=$R/digits/$c"
done
V="$V results/paper-mnist1d/study=$R/mnist1d/measured results/paper-mnist1d/study=$R/mnist1d/proxy"
PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py $V --out $R

#    the digits study's report with the default calibration overlaid (digits/report/)
T=$(mktemp -d) && cp $R/digits/study/study.sqlite $T/ && mkdir $T/calibration && cp $R/digits/default/prediction.json $T/calibration/
$B study report $T && rm -rf $R/digits/report && cp -r $T/report $R/digits/report && rm -rf $T

# 5. item 4: the search centred on the prediction (sgd, adam; explore 4 in the centred box) vs the whole box
$B study run $R/digits/centred.toml --out runs/calibration-digits-centred
sqlite3 runs/calibration-digits-centred/study.sqlite ".backup $R/digits/centred-study/study.sqlite"
PYTHONPATH=src .venv/bin/python benchmarks/bench_centred_search.py --compare $R/digits/study $R/digits/centred-study \
  > $R/digits/centred_vs_normal.txt

# 6. the same calibrations against studies on the training-loss target (train_set_loss <= 0.07):
#    calibration-digits-loss (~8 min) and the quick preset (sgd/momentum/adam, 4 batch sizes) at design
#    seeds 0, 1, 2, whose stores bench_study.py keeps under runs/quick-stability/.  The default
#    calibration's NQM target is the SGD reference's measured training loss at its first error hit,
#    0.0712: the studies' 0.07 within 2%.
$B study run calibration-digits-loss --out runs/calibration-digits-loss
mkdir -p $R/digits/loss-study && sqlite3 runs/calibration-digits-loss/study.sqlite ".backup $R/digits/loss-study/study.sqlite"
PYTHONPATH=src .venv/bin/python benchmarks/bench_study.py --preset quick --seeds 0,1,2 --work runs/quick-stability \
  --out results/quick-stability
V="$R/digits/loss-study=$R/digits/default $R/digits/loss-study=$R/digits/proxy"
for c in default proxy; do for s in 0 1 2; do V="$V runs/quick-stability/seed$s=$R/digits/$c"; done; done
PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py $V --out $R/loss-target

# 7. the same calibrations against the seed-replicated ~4x quick study on the training-loss target
#    (results/stability-digits-loss/: 7 batch sizes, explore 16 + refine 16, 2 candidates x 8 seeds,
#    design seeds 0, 1, 2; its committed stores), analysis only
for s in 0 1 2; do mkdir -p runs/stability-digits-loss-stores/seed$s
  cp results/stability-digits-loss/seed$s.sqlite runs/stability-digits-loss-stores/seed$s/study.sqlite; done
V=""
for s in 0 1 2; do for c in default proxy; do V="$V runs/stability-digits-loss-stores/seed$s=$R/digits/$c"; done; done
PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py $V --out $R/stability-digits-loss

# 8. the NQM predicts what a study measures: one run's median first hit of the target (evaluated every
#    eval_every steps, the stretch before the first hit replayed, as the training loop does), the
#    default of `batchlab calibrate` since this section was added (batchlab.nqm.first_hit).
#    a) the digits calibration for the studies' own training-loss target (Adam's and K-FAC's reference
#       runs then stop at the same target as the studies; ~11 min)
$B calibrate --workload digits-cnn --target-metric train_set_loss --target 0.07 --out $R/digits/loss-target
#    b) the default (error-target) calibration of section 2 re-predicted as a first hit, nothing measured
#       again (the same NQMs; the expected-risk counts stay under expected_* in prediction.json)
PYTHONPATH=src .venv/bin/python benchmarks/first_hit_prediction.py $R/digits/default --every 5 \
  --out $R/digits/default-first-hit
#    c) both against the ~4x study (3 design seeds) and calibration-digits-loss (the one with K-FAC)
V=""
for c in loss-target default-first-hit; do
  for s in 0 1 2; do V="$V runs/stability-digits-loss-stores/seed$s=$R/digits/$c"; done
  V="$V $R/digits/loss-study=$R/digits/$c"
done
PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py $V --out $R/first-hit
#    d) the first hit against the expected risk on the default NQM, per batch size (sgd, momentum)
PYTHONPATH=src .venv/bin/python benchmarks/nqm_first_hit.py $R/digits/default \
  --cells $R/stability-digits-loss/cells.csv --eval-every 5 > $R/first-hit/nqm_first_hit.txt
#    e) Adam's NQM with a preconditioner per batch size (not adopted; ~16 min)
PYTHONPATH=src .venv/bin/python benchmarks/adam_batch_preconditioner.py --out $R/adam-per-batch

# 9. the second workload on a training-loss target: fashion-mnist-mlp against the finished paper-fashion-mnist
#    study (results/paper-fashion-mnist/: train_set_loss <= 0.3, eval_every 20, 3 seeds per candidate), first hit
#    checked as that study evaluates (~80 min on 2 shared cores)
$B calibrate --workload fashion-mnist-mlp --target-metric train_set_loss --target 0.3 \
  --batch-sizes 16,64,256,1024,4096,16384 --first-hit-every 20 --out $R/fashion-mnist/measured
PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py \
  results/paper-fashion-mnist/study=$R/fashion-mnist/measured --out $R/fashion-mnist/validation

# 10. large batches: steps versus effective learning rate, network (every configuration the studies tried) against
#     the NQM (~1 min), and the NQM with every effective rate capped at its reference's (not adopted; ~6 min)
S=results/stability-digits-loss
PYTHONPATH=src .venv/bin/python benchmarks/large_batch_plateau.py --calibration $R/digits/loss-target \
  --study $S/seed0.sqlite --study $S/seed1.sqlite --study $S/seed2.sqlite --study $R/digits/loss-study/study.sqlite \
  --batch-sizes 32,128,1024 --out $R/plateau/digits
PYTHONPATH=src .venv/bin/python benchmarks/large_batch_plateau.py --calibration $R/fashion-mnist/measured \
  --study results/paper-fashion-mnist/study/study.sqlite --batch-sizes 64,256,4096 --beta-box 0.5,0.95 \
  --out $R/plateau/fashion-mnist
mkdir -p $R/rate-cap
PYTHONPATH=src .venv/bin/python benchmarks/calibration_rate_cap.py $R/digits/loss-target \
  --batch-sizes 16,32,64,128,256,512,1024 > $R/rate-cap/digits.txt
PYTHONPATH=src .venv/bin/python benchmarks/calibration_rate_cap.py $R/fashion-mnist/measured \
  --batch-sizes 64,256,1024,4096 > $R/rate-cap/fashion-mnist.txt
PYTHONPATH=src .venv/bin/python benchmarks/calibration_rate_cap.py $R/mnist1d/measured \
  --batch-sizes 16,64,256,1024,2048 > $R/rate-cap/mnist1d.txt
#     the initial state anchored at a measured large-batch SGD cell instead of the reference (not adopted)
PYTHONPATH=src .venv/bin/python benchmarks/calibration_large_anchor.py $R/fashion-mnist/measured \
  --batch-size 4096 --steps 428 --batch-sizes 64,256,1024,4096 > $R/rate-cap/large-anchor-fashion-mnist.txt
PYTHONPATH=src .venv/bin/python benchmarks/calibration_large_anchor.py $R/digits/loss-target \
  --batch-size 1024 --steps 36 --batch-sizes 16,32,64,128,256,512,1024 > $R/rate-cap/large-anchor-digits.txt
#     the NQM tuned inside each study's search box (not adopted)
PYTHONPATH=src .venv/bin/python benchmarks/calibration_study_box.py $R/fashion-mnist/measured \
  studies/paper-fashion-mnist.toml 64,256,1024,4096 > $R/rate-cap/study-box-fashion-mnist.txt
PYTHONPATH=src .venv/bin/python benchmarks/calibration_study_box.py $R/digits/loss-target \
  studies/stability-digits-loss.toml 16,32,64,128,256,512,1024 > $R/rate-cap/study-box-digits.txt
#     the cap at the network's own floor onset at the largest batch size (plateau [lo, ...] of section 10's
#     plateau.txt files: the best a short large-batch rate scan could give the NQM; not adopted)
PYTHONPATH=src .venv/bin/python benchmarks/calibration_rate_cap.py $R/digits/loss-target \
  --batch-sizes 16,32,64,128,256,512,1024 --cap sgd=0.2963 --cap momentum=0.5847 --cap adam=0.008997 \
  --cap kfac=0.1438 > $R/rate-cap/digits-floor-onset.txt
PYTHONPATH=src .venv/bin/python benchmarks/calibration_rate_cap.py $R/fashion-mnist/measured \
  --batch-sizes 64,256,1024,4096 --cap sgd=0.1961 --cap momentum=1.118 --cap adam=0.001283 \
  --cap kfac=0.5314 > $R/rate-cap/fashion-mnist-floor-onset.txt

# 11. K-FAC measured on the ~4x protocol (studies/stability-digits-loss-kfac.toml, design seeds 0, 1, 2, ~5-9 min
#     each; and with twice the search, stability-digits-loss-kfac-2x.toml, whose first run predates its
#     fallback = 1: rerunning the command with it extended the stores), validated against the loss-target
#     calibration of section 8a; K-FAC with fresh inverses; its steps versus rate (the plateau section 10 lacked)
# a preset on design seeds 0, 1, 2 (bench_study.py), its vacuumed stores in results/PRESET/, its validation in OUT
design_seeds() {
  local P=$1 OUT=$2 V="" s
  shift 2
  PYTHONPATH=src .venv/bin/python benchmarks/bench_study.py --preset studies/$P.toml --seeds 0,1,2 \
    --work runs/$P --out results/$P
  for s in 0 1 2; do
    sqlite3 runs/$P/seed$s/study.sqlite ".backup results/$P/seed$s.sqlite"
    sqlite3 results/$P/seed$s.sqlite "PRAGMA journal_mode=DELETE; VACUUM;"
    mkdir -p runs/$P-stores/seed$s && cp results/$P/seed$s.sqlite runs/$P-stores/seed$s/study.sqlite
    V="$V runs/$P-stores/seed$s=$R/digits/loss-target"
  done
  PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py $V "$@" --out $OUT
}
design_seeds stability-digits-loss-kfac $R/kfac
design_seeds stability-digits-loss-kfac-2x $R/kfac-2x
#    K-FAC with its inverses recomputed every step (an import reference; the store names it by its absolute path)
design_seeds stability-digits-loss-kfac-period1 $R/kfac-period1 \
  --rename "$(pwd)/studies/optimizers/kfac_period1.py:SPEC=kfac"
#    ... and on fashion-mnist-mlp: paper-fashion-mnist's K-FAC with inverses every step (~12 min)
P=paper-fashion-mnist-kfac-period1
$B study run studies/$P.toml --out runs/$P
mkdir -p results/$P/study && sqlite3 runs/$P/study.sqlite ".backup results/$P/study/study.sqlite"
sqlite3 results/$P/study/study.sqlite "PRAGMA journal_mode=DELETE; VACUUM;"
PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py results/$P/study=$R/fashion-mnist/measured \
  --rename "$(pwd)/studies/optimizers/kfac_period1.py:SPEC=kfac" --out $R/fashion-mnist/kfac-period1
#    the period-5 winners rerun with fresh inverses (~5 min)
PYTHONPATH=src .venv/bin/python benchmarks/preconditioner_freshness.py --optimizer kfac --study results/stability-digits-loss-kfac/seed0.sqlite \
  --study results/stability-digits-loss-kfac/seed1.sqlite --study results/stability-digits-loss-kfac/seed2.sqlite \
  --batch-sizes 128,1024 --seeds 8 > $R/kfac/inverse_period.txt
#    the same for Adam: the ~4x winners with a faster second-moment average (beta2 0.99, 0.9; ~5 min)
S=results/stability-digits-loss
PYTHONPATH=src .venv/bin/python benchmarks/preconditioner_freshness.py --optimizer adam --study $S/seed0.sqlite \
  --study $S/seed1.sqlite --study $S/seed2.sqlite --batch-sizes 128,1024 --seeds 8 > $R/adam-per-batch/beta2.txt
K=results/stability-digits-loss-kfac
PYTHONPATH=src .venv/bin/python benchmarks/large_batch_plateau.py --calibration $R/digits/loss-target \
  --study $K/seed0.sqlite --study $K/seed1.sqlite --study $K/seed2.sqlite --study $R/digits/loss-study/study.sqlite \
  --optimizers kfac --batch-sizes 32,128,1024 --beta-box 0.5,0.95 --out $R/plateau/digits-kfac

# 12. K-FAC's stale inverses in the NQM (batchlab.nqm.drift; `batchlab calibrate --drift`, default auto = kfac
#     where measured, since this section): the NQM of K-FAC follows the inverses its reference run applied before
#     the checkpoint (refreshed every 5 updates), instead of the checkpoint's from update 0.
#    a) digits-cnn, the default pipeline on the studies' training-loss target (~8 min), validated against the ~4x
#       study (sgd, momentum, adam; unchanged) and K-FAC's own studies of section 11 (1x and 2x search)
$B calibrate --workload digits-cnn --target-metric train_set_loss --target 0.07 --out $R/digits/drift
digits_stores() {  # V: the ~4x study's and K-FAC's two studies' stores (design seeds 0-2), each against calibration $1
  V=""
  for P in stability-digits-loss stability-digits-loss-kfac stability-digits-loss-kfac-2x; do
    for s in 0 1 2; do
      mkdir -p runs/$P-stores/seed$s && cp results/$P/seed$s.sqlite runs/$P-stores/seed$s/study.sqlite
      V="$V runs/$P-stores/seed$s=$1"
    done
  done
}
digits_stores $R/digits/drift
PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py $V --out $R/drift
#    b) fashion-mnist-mlp (sgd and kfac; the K-FAC part is section 9's, now with its drift; ~50 min), against
#       paper-fashion-mnist (the registry's K-FAC)
$B calibrate --workload fashion-mnist-mlp --target-metric train_set_loss --target 0.3 \
  --batch-sizes 16,64,256,1024,4096,16384 --first-hit-every 20 --optimizers sgd,kfac --out $R/fashion-mnist/drift
PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py \
  results/paper-fashion-mnist/study=$R/fashion-mnist/drift --out $R/fashion-mnist/drift-validation
#    c) why Adam's drift is not modelled: its early preconditioner against its checkpoint's (~2 min)
PYTHONPATH=src .venv/bin/python benchmarks/adam_drift.py > $R/drift/adam_drift.txt
#    d) a third workload, mnist1d-cnn on its error target against paper-mnist1d (section 3's setting; ~12 min).
#       K-FAC's reference rate is one grid step below section 3's 0.0281, at which the seed-0 reference run now
#       diverges on this machine, at the commit that produced section 3's files too
$B calibrate --workload mnist1d-cnn --option num_samples=20000 --reference-tune 0 \
  --reference-hp learning_rate=0.464158883361278 --kfac-hp learning_rate=0.014422495703074084 --optimizers sgd,kfac \
  --batch-sizes 4,16,64,256,1024,2048,4096,16384 --out $R/mnist1d/drift
PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py results/paper-mnist1d/study=$R/mnist1d/drift \
  --out $R/mnist1d/drift-validation
# 13. Adam's first-moment bias correction in its NQM (the default since this section): optax's Adam divides its
#     first moment by 1 - beta1^(t+1), so its first update takes the full step lr where the NQM's heavy ball
#     took lr (1 - beta1); the correction lasts a few 1 / (1 - beta1) updates, a whole large-batch run.
#    a) the committed calibrations' Adam NQMs re-predicted with and without it, the initial state refitted
#       each way (~1 min and ~6 min)
mkdir -p $R/adam-bias-correction
PYTHONPATH=src .venv/bin/python benchmarks/adam_bias_correction.py $R/digits/loss-target --measured 109,105,104 \
  > $R/adam-bias-correction/digits.txt
PYTHONPATH=src .venv/bin/python benchmarks/adam_bias_correction.py $R/fashion-mnist/measured --measured 1067 \
  > $R/adam-bias-correction/fashion-mnist.txt
#    b) digits-cnn, the default pipeline (~4 min), validated as in section 12a (sgd, momentum and kfac as there)
$B calibrate --workload digits-cnn --target-metric train_set_loss --target 0.07 --out $R/digits/bias-correction
digits_stores $R/digits/bias-correction
PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py $V --out $R/bias-correction
#    c) fashion-mnist-mlp (sgd, momentum, adam; K-FAC is section 12b's; ~11 min), against paper-fashion-mnist
$B calibrate --workload fashion-mnist-mlp --target-metric train_set_loss --target 0.3 \
  --batch-sizes 16,64,256,1024,4096,16384 --first-hit-every 20 --optimizers sgd,momentum,adam \
  --out $R/fashion-mnist/bias-correction
PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py \
  results/paper-fashion-mnist/study=$R/fashion-mnist/bias-correction --out $R/fashion-mnist/bias-correction-validation
#    d) SGD's remaining miss on fashion-mnist-mlp: the bulk's noise from tr Σ instead of tr HΣ, re-predicted on the
#       reference NQMs of b) and c) (not adopted; ~3 min)
mkdir -p $R/bulk-noise
PYTHONPATH=src .venv/bin/python benchmarks/calibration_bulk_noise.py $R/digits/bias-correction --every 5 \
  > $R/bulk-noise/digits.txt
PYTHONPATH=src .venv/bin/python benchmarks/calibration_bulk_noise.py $R/fashion-mnist/bias-correction --every 20 \
  > $R/bulk-noise/fashion-mnist.txt
#    e) the digits calibration of b) with seeds 1 and 2 (~4 min each; their reference runs and measurements all
#       change): the calibration's own seed noise, and Adam's NQM of each seed re-predicted with the correction off and on
for s in 1 2; do
  $B calibrate --workload digits-cnn --target-metric train_set_loss --target 0.07 --seed $s \
    --out $R/digits/bias-correction-seed$s
  digits_stores $R/digits/bias-correction-seed$s
  PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py $V --out $R/bias-correction-seed$s
  PYTHONPATH=src .venv/bin/python benchmarks/adam_bias_correction.py $R/digits/bias-correction-seed$s \
    --measured 109,105,104 > $R/adam-bias-correction/digits-seed$s.txt
done
#    f) the fashion-mnist-mlp calibration of c) with seed 1 (~10 min)
$B calibrate --workload fashion-mnist-mlp --target-metric train_set_loss --target 0.3 \
  --batch-sizes 16,64,256,1024,4096,16384 --first-hit-every 20 --optimizers sgd,momentum,adam --seed 1 \
  --out $R/fashion-mnist/bias-correction-seed1
PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py \
  results/paper-fashion-mnist/study=$R/fashion-mnist/bias-correction-seed1 --out $R/fashion-mnist/bias-correction-seed1-validation
# 14. The calibration's own seed, averaged; the anchor at the reference run's momentum; a study's search box.
#    a) the three digits calibrations of section 13 (seeds 0, 1, 2; their code) combined: median steps per batch
#       size (batchlab calibrate-combine; seconds), validated as in 13b
$B calibrate-combine $R/digits/bias-correction $R/digits/bias-correction-seed1 $R/digits/bias-correction-seed2 \
  --out $R/digits/ensemble
digits_stores $R/digits/ensemble
PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py $V --out $R/ensemble
#    b) Adam's NQM re-predicted on section 13's calibrations three ways (anchor and curve free; the anchor at the
#       reference run's beta1 = 0.9, now the default; and the curve inside the study's box too), and
#       fashion-mnist-mlp's momentum and Adam inside paper-fashion-mnist's box (~1-3 min each)
mkdir -p $R/search-box
for s in "" -seed1 -seed2; do
  PYTHONPATH=src .venv/bin/python benchmarks/calibration_search_box.py $R/digits/bias-correction$s adam \
    --anchor-momentum 0.9 --lr 1e-4,0.03 --momentum 0.5,0.999 --measured 109,105,104 \
    > $R/search-box/digits-adam${s:-"-seed0"}.txt
done
PYTHONPATH=src .venv/bin/python benchmarks/calibration_search_box.py $R/fashion-mnist/bias-correction momentum \
  --lr 0.003,0.3 --momentum 0.5,0.95 --measured 1166 > $R/search-box/fashion-momentum.txt
PYTHONPATH=src .venv/bin/python benchmarks/calibration_search_box.py $R/fashion-mnist/bias-correction adam \
  --anchor-momentum 0.9 --lr 0.001,0.03 --momentum 0.5,0.95 --measured 1067 > $R/search-box/fashion-adam.txt
#    c) digits-cnn, three calibration seeds (--seeds 3: seed-0 … seed-2 and their median), the anchors at the
#       reference runs' momenta and the curves inside the validating studies' search boxes (~14 min)
$B calibrate --workload digits-cnn --target-metric train_set_loss --target 0.07 --seeds 3 \
  --search-space studies/stability-digits-loss.toml --search-space studies/stability-digits-loss-kfac.toml \
  --out $R/digits/search-box
digits_stores $R/digits/search-box
PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py $V --out $R/search-box/digits
#    d) fashion-mnist-mlp, the same with the four optimizers against paper-fashion-mnist (~55 min)
$B calibrate --workload fashion-mnist-mlp --target-metric train_set_loss --target 0.3 \
  --batch-sizes 16,64,256,1024,4096,16384 --first-hit-every 20 --seeds 3 \
  --search-space studies/paper-fashion-mnist.toml --out $R/fashion-mnist/search-box
PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py \
  results/paper-fashion-mnist/study=$R/fashion-mnist/search-box --out $R/search-box/fashion-mnist
#    e) is a three-seed median reproducible?  Three more digits seeds (3, 4, 5; ~14 min), and the median of all six
$B calibrate --workload digits-cnn --target-metric train_set_loss --target 0.07 --seeds 3 --seed 3 \
  --search-space studies/stability-digits-loss.toml --search-space studies/stability-digits-loss-kfac.toml \
  --out $R/digits/search-box-seeds345
$B calibrate-combine $R/digits/search-box/seed-{0,1,2} $R/digits/search-box-seeds345/seed-{3,4,5} \
  --out $R/digits/search-box-6seeds
for d in seeds345 6seeds; do
  digits_stores $R/digits/search-box-$d
  PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py $V --out $R/search-box/digits-$d
done
#    f) what momentum and Adam buy over SGD per batch size, measured against the NQM (seconds)
PYTHONPATH=src .venv/bin/python benchmarks/momentum_gain.py $R/search-box/digits-6seeds/cells.csv \
  $R/search-box/fashion-mnist/cells.csv > $R/search-box/momentum-gain.txt
# 15. A start-up delay (the default since this section): each NQM's run begins after T0 updates, T0 fitted with
#     the initial state to its reference run's loss curve (batchlab.calibrate.model, "The start-up delay").
#    a) digits-cnn, the six calibration seeds of section 14 c and e with it (~2 x 15 min), and their median
$B calibrate --workload digits-cnn --target-metric train_set_loss --target 0.07 --seeds 3 \
  --search-space studies/stability-digits-loss.toml --search-space studies/stability-digits-loss-kfac.toml \
  --out $R/digits/delay
$B calibrate --workload digits-cnn --target-metric train_set_loss --target 0.07 --seeds 3 --seed 3 \
  --search-space studies/stability-digits-loss.toml --search-space studies/stability-digits-loss-kfac.toml \
  --out $R/digits/delay-seeds345
$B calibrate-combine $R/digits/delay/seed-{0,1,2} $R/digits/delay-seeds345/seed-{3,4,5} --out $R/digits/delay-6seeds
#    b) fashion-mnist-mlp, section 14d with it (~55 min)
$B calibrate --workload fashion-mnist-mlp --target-metric train_set_loss --target 0.3 \
  --batch-sizes 16,64,256,1024,4096,16384 --first-hit-every 20 --seeds 3 \
  --search-space studies/paper-fashion-mnist.toml --out $R/fashion-mnist/delay
#    c) validation against the seed-replicated studies, as in section 14
mkdir -p $R/delay
for d in delay delay-seeds345 delay-6seeds; do
  digits_stores $R/digits/$d
  PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py $V --out $R/delay/digits${d#delay}
done
PYTHONPATH=src .venv/bin/python benchmarks/calibration_validation.py \
  results/paper-fashion-mnist/study=$R/fashion-mnist/delay --out $R/delay/fashion-mnist
PYTHONPATH=src .venv/bin/python benchmarks/momentum_gain.py $R/delay/digits-6seeds/cells.csv \
  $R/delay/fashion-mnist/cells.csv > $R/delay/momentum-gain.txt
#    d) before the fit: the delay shifted by hand on section 14's committed NQMs (seconds each)
PYTHONPATH=src .venv/bin/python benchmarks/calibration_delay_shift.py $R/digits/search-box/seed-{0,1,2} \
  $R/digits/search-box-seeds345/seed-{3,4,5} --delays 0,5,10,15 --batch-sizes 16,32,64,128,256,512,1024 \
  --sgd-box 0.01,3 --momentum-box 0.001,1,0.5,0.99 --measured-sgd 146.5,86.5,60,49,40,35.5,39.5 \
  --measured-momentum 149.5,95,57.5,36.5,27,23.5,23.5 > $R/delay/shift-digits.txt
PYTHONPATH=src .venv/bin/python benchmarks/calibration_delay_shift.py $R/fashion-mnist/search-box/seed-{0,1,2} \
  --delays 0,10,30 --batch-sizes 64,256,1024,4096 --sgd-box 0.03,1 --momentum-box 0.003,0.3,0.5,0.95 \
  --measured-sgd 1600,681,408,428 --measured-momentum 1780,468,197,114 > $R/delay/shift-fashion.txt
# 16. Why SGD misses on fashion-mnist-mlp: the NQM's noise floor against the network's at the checkpoint, and
#     steps at one nominal learning rate, network against NQM (benchmarks/calibration_noise_coupling.py;
#     ~3 min for digits-cnn, ~10 min for fashion-mnist-mlp)
mkdir -p $R/noise-coupling
PYTHONPATH=src .venv/bin/python benchmarks/calibration_noise_coupling.py digits-cnn $R/digits/delay/seed-0 \
  --sizes 16,64,256,1024 --rates 0.1,0.2,0.3,0.4642 --floor-sizes 16,64,1024 --floor-rates 0.1,0.2 \
  --floor-steps 100 --horizon 600 --curve-every 1 > $R/noise-coupling/digits.txt
PYTHONPATH=src .venv/bin/python benchmarks/calibration_noise_coupling.py fashion-mnist-mlp $R/fashion-mnist/delay/seed-0 \
  --sizes 64,256,1024,4096 --rates 0.1,0.2154,0.3 --floor-sizes 32,64,128,4096 --horizon 3000 \
  > $R/noise-coupling/fashion-mnist.txt
#     and the simplest model of that extra cost, the NQM's noise scaled by κ (no training; ~4 + 7 min)
PYTHONPATH=src .venv/bin/python benchmarks/calibration_noise_scale.py $R/fashion-mnist/delay/seed-{0,1,2} \
  --kappas 1,1.5,2,3 --batch-sizes 64,256,1024,4096 --sgd-box 0.03,1 --momentum-box 0.003,0.3,0.5,0.95 \
  --measured-sgd 1600,681,408,428 --measured-momentum 1780,468,197,114 > $R/noise-coupling/noise-scale-fashion.txt
PYTHONPATH=src .venv/bin/python benchmarks/calibration_noise_scale.py $R/digits/delay/seed-{0,1,2} \
  $R/digits/delay-seeds345/seed-{3,4,5} --kappas 1,1.5,2,3 --batch-sizes 16,32,64,128,256,512,1024 \
  --sgd-box 0.01,3 --momentum-box 0.001,1,0.5,0.99 --measured-sgd 146.5,86.5,60,49,40,35.5,39.5 \
  --measured-momentum 149.5,95,57.5,36.5,27,23.5,23.5 > $R/noise-coupling/noise-scale-digits.txt
#     and the curvature each SGD run reaches the target with, per batch size (at the study's winning rates of
#     design seed 0, and on fashion-mnist-mlp at the reference's rate), with an NQM re-predicted on it (~5 min each)
PYTHONPATH=src .venv/bin/python benchmarks/calibration_batch_curvature.py fashion-mnist-mlp $R/fashion-mnist/delay/seed-0 \
  --sizes 64,256,1024,4096 --rates 0.126,0.239,0.294,0.423 --box 0.03,1 --measured 1600,681,408,428 --every 20 \
  > $R/noise-coupling/batch-curvature-fashion.txt
PYTHONPATH=src .venv/bin/python benchmarks/calibration_batch_curvature.py digits-cnn $R/digits/delay/seed-0 \
  --sizes 16,32,64,128,256,512,1024 --rates 0.209,0.327,0.439,0.482,0.635,0.521,0.656 --box 0.01,3 --every 5 \
  --measured 146.5,86.5,60,49,40,35.5,39.5 > $R/noise-coupling/batch-curvature-digits.txt
PYTHONPATH=src .venv/bin/python benchmarks/calibration_batch_curvature.py fashion-mnist-mlp $R/fashion-mnist/delay/seed-0 \
  --sizes 64,256,1024,4096 --rates 0.2154,0.2154,0.2154,0.2154 --box 0.03,1 --measured 1600,681,408,428 --every 20 \
  > $R/noise-coupling/batch-curvature-fashion-one-rate.txt
#     ... and B = 64 alone at four rates (~8 min)
PYTHONPATH=src .venv/bin/python benchmarks/calibration_batch_curvature.py fashion-mnist-mlp $R/fashion-mnist/delay/seed-0 \
  --sizes 64,64,64,64 --rates 0.063,0.126,0.3,0.45 --box 0.03,1 --every 20 > $R/noise-coupling/batch-curvature-fashion-b64.txt
