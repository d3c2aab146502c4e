"""What the stream probe of the ablation report rewards."""

import numpy as np

from cmse_speechbrain.diagnostics import RIDGE_GRID, _probe_r2


def _frames(seed=0, utterances=8, frames=200):
    rng = np.random.default_rng(seed)
    # dB, far from 0 like real energies
    speech = rng.normal(-40.0, 10.0, utterances * frames)
    noise = rng.normal(-45.0, 5.0, utterances * frames)
    utterance = np.repeat(np.arange(utterances), frames)
    folds = (utterance // 4) % 2
    return rng, speech, noise, utterance, folds


def test_probe_scores_the_source_a_stream_encodes():
    rng, speech, noise, utterance, folds = _frames()
    features = np.column_stack(
        [speech + rng.normal(0, 2.0, speech.size), rng.normal(size=(speech.size, 15))]
    )
    speech_r2 = _probe_r2(features, speech, folds, utterance)
    noise_r2 = _probe_r2(features, noise, folds, utterance)
    assert speech_r2 > 0.9
    assert abs(noise_r2) < 0.05


def test_uninformative_features_score_near_zero_at_every_penalty():
    # the intercept is not penalised: a strong penalty shrinks towards the
    # training mean, not towards 0 dB (which gave R^2 far below 0)
    rng, speech, _, utterance, folds = _frames(seed=1)
    features = rng.normal(size=(speech.size, 32))
    for ridges in [(RIDGE_GRID[-1],), RIDGE_GRID]:
        assert -0.05 < _probe_r2(features, speech, folds, utterance, ridges) < 0.05
