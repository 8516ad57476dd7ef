"""The exercises of the lab: for each day, the promoted functions and classes the learner writes.

Every other promoted function stays given (written out in the exercise notebook). Each exercise
has a check (`tinyllm_lab.lab.check`) with at least two catalogued mistakes.
`{day: [(module, name), ...]}`, in notebook order.
"""

EXERCISES = {
    1: [("ops", "linear"), ("ops", "softmax"), ("ops", "rms_norm"), ("ops", "silu")],
    2: [("rope", "rope_frequencies"), ("rope", "rope_tables"), ("rope", "apply_rope")],
    3: [("attention", "causal_mask"), ("attention", "repeat_kv"), ("attention", "attention_weights"),
        ("attention", "attention"), ("attention", "self_attention")],
    4: [("kv_cache", "KVCache"), ("kv_cache", "cached_self_attention"), ("ffn", "swiglu")],
    5: [("model", "block"), ("model", "Model"), ("sampling", "top_k_filter"), ("sampling", "top_p_filter"),
        ("sampling", "next_token_probs"), ("sampling", "sample"), ("session", "Session")],
    6: [("safetensors", "read_header"), ("safetensors", "load_file"), ("weights", "weights_from_tensors")],
    7: [("tokenizer", "pair_counts"), ("tokenizer", "merge"), ("tokenizer", "apply_merges"),
        ("tokenizer", "Tokenizer"), ("tokenizer", "StreamDecoder")],
}


def exercises(day=None):  # -> [(day, module, name)]
    """Every exercise, or those of one day, as `(day, module, name)` in course order."""
    days = sorted(EXERCISES) if day is None else [day]
    return [(d, module, name) for d in days for module, name in EXERCISES[d]]
