"""Benchmark: the numpy engine against the PyTorch reference and `transformers`, on the same weights, in one run.

    python -m tinyllm_lab.bench [--weights weights] [--repeats 5] [--quick]

Every engine runs on the CPU with one thread: BLAS for numpy (forced here, checked with
threadpoolctl), `torch.set_num_threads(1)` for torch, whose reference model runs under
`torch.inference_mode()` and decodes through its own KV cache, and for `transformers`
(`LlamaForCausalLM`, decoding step by step through its own cache, as a user would).
They do the same work: the same seeded prompt tokens, greedy argmax after every forward pass,
each token handed back as a Python int as a generation loop would (the run checks that the
engines pick the same tokens).

The rows, in tokens per second (higher is better):

    prefill T          one forward pass of a T-token prompt into an empty cache, then the
                       greedy next token: T / seconds (numpy and torch)
    decode to N        after a 16-token prompt (prefilled, not timed), greedy decoding one
                       token per forward pass until the context holds N tokens: the average
                       rate over contexts 17 .. N (all three engines)
    cached step at N   the same run's last 32 steps, at contexts N-31 .. N
    no cache at N      one decode step without a cache: all N tokens of the context recomputed
                       (through a fresh cache for numpy, the uncached path for torch)
    Session ... to 256 the numpy engine's own generation loop (`Session.stream`) from the same
                       prompt to context 256, greedy and sampled (temperature 0.8, top-p 0.95,
                       the command line's defaults): the decode steps only, sampling included

The roofline. Decoding is bound by memory traffic: each step reads every weight once (the
output head included) plus the keys and values of every cached position (`step_bytes`). The
run measures what one core streams at that moment through a matrix-vector product (GEMV) over
a matrix far larger than the CPU caches (`gemv_bandwidth`), so `bandwidth / step_bytes` is the
most tokens per second any engine could decode on this machine now, and each engine's share
of it is printed (for "decode to N", over the same contexts 17 .. N). A model small enough to
stay in the caches can beat that limit (a share above 1); the GEMV over a matrix of the
weights' own size is printed too, to show how much of it the caches hold.

then, each in a fresh Python process, the cold start (seconds from the first import to the
first token's logits, measured inside the process: the interpreter's own start-up is not in
it) and the peak memory (largest resident size, after the biggest jobs above on one engine),
for numpy and torch. Last, the course's targets for the numpy engine, PASS or FAIL; exit
status 1 if any fails.

How to read it on a shared, noisy machine. Each figure keeps the best of `--repeats` runs:
the time of a prefill or uncached step is the shortest of its runs; a decode run is timed
step by step and each step keeps its shortest time before they are added up (so a burst of
load from elsewhere spoils one step, not a whole 4-second run). Engines alternate, the order
reversed every other round. Trust the ratios, all measured in the same run, more than the
absolute figures, and run twice before believing a difference under about 10%.
Hand-written, imports torch and transformers: not part of the engine.
"""

import os

if __name__ == "__main__":  # run as a program: one thread against one thread, whatever the environment says
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"  # before numpy loads its BLAS; `thread_report` checks it took effect

import argparse  # noqa: E402
import gc  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from tinyllm_lab.session import Session  # noqa: E402
from tinyllm_lab.weights import load_model  # noqa: E402

PREFILL_LENGTHS = (16, 128, 512)
CONTEXTS = (256, 1024)
PROMPT_LENGTH = 16  # decode runs start after a prompt of this many tokens
LAST_STEPS = 32     # "cached step at N": the decode steps at contexts N-31 .. N
SEED = 0
SESSION_CONTEXT = 256  # the Session rows decode to this context
SAMPLED = dict(temperature=0.8, top_p=0.95)  # the command line's default sampling settings
GEMV_MIB = 256  # the roofline's GEMV: a matrix of this many MiB, far beyond any CPU cache
PEAK_MEMORY_BEFORE = 164  # MiB: numpy's peak memory in this benchmark before issue 11 (README, two runs)


# ---------------------------------------------------------------------------------------------
# The two engines behind one interface: prefill(tokens) and step(token) continue one generation
# (the engine keeps its KV cache), recompute(tokens) uses none. Each returns the greedy next token.

class NumpyEngine:
    name = "numpy"

    def __init__(self, folder, max_seq_len=None):
        self.model = load_model(folder, max_seq_len=max_seq_len)
        self.cache = None

    def prefill(self, tokens):  # [T] int -> int
        """A new generation: the prompt through an empty cache in one forward pass."""
        self.cache = self.model.new_cache()
        return int(np.argmax(self.model.forward(tokens, self.cache)[-1]))

    def step(self, token):  # int -> int
        """One decode step: the last token through the cache."""
        return int(np.argmax(self.model.forward(np.array([token]), self.cache)[-1]))

    def recompute(self, tokens):  # [N] int -> int
        """One decode step without a cache: the whole context again, through a fresh cache."""
        return int(np.argmax(self.model.forward(tokens, self.model.new_cache())[-1]))


class TorchEngine:
    name = "torch"

    def __init__(self, folder):
        import torch
        from tinyllm_lab.reference import load_hf_folder
        torch.set_num_threads(1)
        self.torch, self.model = torch, load_hf_folder(folder)
        self.pos = 0  # positions filled in the model's own KV cache

    def prefill(self, tokens):
        with self.torch.inference_mode():
            logits = self.model(self.torch.from_numpy(tokens)[None], start_pos=0)  # [1, T, V]
        self.pos = len(tokens)
        return int(logits[0, -1].argmax())

    def step(self, token):
        with self.torch.inference_mode():
            logits = self.model(self.torch.tensor([[token]]), start_pos=self.pos)  # [1, 1, V]
        self.pos += 1
        return int(logits[0, -1].argmax())

    def recompute(self, tokens):
        with self.torch.inference_mode():  # start_pos=None: the reference's uncached path
            return int(self.model(self.torch.from_numpy(tokens)[None])[0, -1].argmax())


def quiet_transformers():  # no progress bars or advice on the benchmark's output
    from transformers.utils import logging
    logging.disable_progress_bar()
    logging.set_verbosity_error()


class TransformersEngine:
    """Hugging Face `transformers`' LlamaForCausalLM on the same folder: what a user would otherwise pick."""
    name = "transformers"

    def __init__(self, folder):
        import torch
        import transformers
        torch.set_num_threads(1)
        quiet_transformers()
        self.torch = torch
        self.model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        self.past = None  # the model's own KV cache (a transformers Cache object, `cache=` in transformers 5)

    def prefill(self, tokens):
        with self.torch.inference_mode():
            out = self.model(self.torch.from_numpy(tokens)[None], use_cache=True)
        self.past = out.cache
        return int(out.logits[0, -1].argmax())

    def step(self, token):  # one token through the model's cache, as generate() does
        with self.torch.inference_mode():
            out = self.model(self.torch.tensor([[token]]), cache=self.past, use_cache=True)
        self.past = out.cache
        return int(out.logits[0, -1].argmax())

    def recompute(self, tokens):
        with self.torch.inference_mode():
            return int(self.model(self.torch.from_numpy(tokens)[None], use_cache=False).logits[0, -1].argmax())


class SessionRun:
    """The numpy engine's own generation loop, `Session.stream`, with fixed sampling settings (empty: greedy)."""

    def __init__(self, name, model, settings):
        self.name, self.model, self.settings = name, model, settings

    def generate(self, prompt, max_new_tokens):  # -> (tokens, seconds of each decode step, sampling included)
        """Time between consecutive tokens: the first token (prefill + first draw) is not timed."""
        rng = np.random.default_rng(SEED) if self.settings else None
        tokens, seconds = [], []
        stream = Session(self.model).stream(prompt, max_new_tokens, rng, **self.settings)
        tokens.append(next(stream))
        start = time.perf_counter()
        for token in stream:
            now = time.perf_counter()
            tokens.append(token)
            seconds.append(now - start)
            start = now
        return tokens, seconds


ENGINES = {"numpy": NumpyEngine, "torch": TorchEngine, "transformers": TransformersEngine}
FRESH_PROCESS_ENGINES = ("numpy", "torch")  # cold start and peak memory (transformers' import alone takes seconds)


# ---------------------------------------------------------------------------------------------
# Timing. A job runs on one engine and returns (tokens, seconds of each timed part).

def elapsed(fn, *args):  # -> (fn's result, seconds)
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def one_call(method, tokens):  # prefill or recompute, timed as one part
    def job(engine):
        token, seconds = elapsed(getattr(engine, method), tokens)
        return [token], [seconds]
    return job


def decode(prompt, context):  # the prefill is not timed; each decode step is a part
    def job(engine):
        token, tokens, seconds = engine.prefill(prompt), [], []
        for _ in range(context - len(prompt)):
            token, s = elapsed(engine.step, token)
            tokens.append(token)
            seconds.append(s)
        return tokens, seconds
    return job


def best_of(engines, job, repeats):  # -> {engine name: (tokens, best seconds of each part)}
    """Run job `repeats` times on each engine, alternating which goes first; each part keeps its best time.

    The garbage collector is paused during a run, as in `timeit`, and collected between runs.
    """
    tokens, best = {}, {}
    for r in range(repeats):
        for engine in engines if r % 2 == 0 else engines[::-1]:
            gc.collect()
            gc.disable()
            try:
                tokens[engine.name], seconds = job(engine)
            finally:
                gc.enable()
            best[engine.name] = np.minimum(seconds, best.get(engine.name, np.inf))
    return {name: (tokens[name], best[name]) for name in best}


def session_decode(prompt, context):  # a job for SessionRun "engines": prompt, then decode to `context`
    def job(run):
        return run.generate(prompt, context - len(prompt))
    return job


def measure(engines, vocab_size, repeats, decode_only=()):  # -> ({row: {engine: tokens/s}}, {engine: decoded tokens})
    """Every row for `engines`; those named in `decode_only` run the decode rows only."""
    longest = np.random.default_rng(SEED).integers(0, vocab_size, max(CONTEXTS + PREFILL_LENGTHS))
    full = [e for e in engines if e.name not in decode_only]
    rows = {}  # every prompt and context below is a prefix of `longest`
    for T in PREFILL_LENGTHS:
        prefills = best_of(full, one_call("prefill", longest[:T]), repeats)
        rows[f"prefill {T}"] = {name: T / seconds.sum() for name, (_, seconds) in prefills.items()}
    decodes = best_of(engines, decode(longest[:PROMPT_LENGTH], max(CONTEXTS)), repeats)  # one run serves every N
    for N in CONTEXTS:
        n = N - PROMPT_LENGTH  # the first n steps of the run bring the context to N
        rows[f"decode to {N}"] = {name: n / seconds[:n].sum() for name, (_, seconds) in decodes.items()}
        rows[f"cached step at {N}"] = {name: LAST_STEPS / seconds[n - LAST_STEPS:n].sum()
                                       for name, (_, seconds) in decodes.items()}
    for N in CONTEXTS:
        recomputes = best_of(full, one_call("recompute", longest[:N]), repeats)
        rows[f"no cache at {N}"] = {name: 1 / seconds.sum() for name, (_, seconds) in recomputes.items()}
    return rows, {name: tokens for name, (tokens, _) in decodes.items()}


def measure_sessions(model, repeats):  # -> {row: {"numpy": tokens/s}}: Session greedy and sampled, same prompt
    prompt = np.random.default_rng(SEED).integers(0, model.config.vocab_size, PROMPT_LENGTH)
    runs = [SessionRun("greedy", model, {}), SessionRun("sampled", model, SAMPLED)]
    results = best_of(runs, session_decode(prompt, SESSION_CONTEXT), repeats)
    names = {"greedy": f"Session greedy to {SESSION_CONTEXT}", "sampled": f"Session sampled to {SESSION_CONTEXT}"}
    return {names[name]: {"numpy": len(seconds) / seconds.sum()} for name, (_, seconds) in results.items()}


# ---------------------------------------------------------------------------------------------
# The roofline: what a decode step must read, and what one core streams now

def step_bytes(model, context):  # -> bytes one decode step at `context` cached positions must read
    """Every weight of every layer, the final norm and the output head [V, D] once, one embedding row, and
    the cached keys and values of all `context` positions: 2 * n_layers * context * K * Dh * 4 bytes.

    The course model: 25.2 MB of weights (16.8 MB of them the head) plus 4 KiB per cached position.
    """
    c, w = model.config, model.weights
    layers = sum(getattr(layer, name).nbytes for layer in w.layers for name in vars(layer))
    weights = layers + w.norm.nbytes + w.output.nbytes + c.dim * 4  # one row of tok_embeddings
    return weights + 2 * c.n_layers * context * c.n_kv_heads * c.head_dim * 4


def gemv_bandwidth(mib, repeats):  # -> bytes per second of the best of `repeats` GEMVs over a `mib` MiB matrix
    """x [1, 1024] @ A with A [rows, ...] float32 read once per product, A.T stored as the engine stores its head."""
    a = np.ones((1024, mib * 2**20 // 4096), dtype=np.float32)  # [1024, cols], C order: x @ a streams it row by row
    x = np.ones((1, 1024), dtype=np.float32)
    best = min(elapsed(np.matmul, x, a)[1] for _ in range(max(repeats, 3)))
    return a.nbytes / best


def roofline(model, rows, bandwidth):  # -> {row: {engine: share}}, {row: limit tokens/s}
    """For each "decode to N": the limit = steps / (bytes of those steps / bandwidth), and each engine's share."""
    shares, limits = {}, {}
    for N in CONTEXTS:
        contexts = range(PROMPT_LENGTH + 1, N + 1)  # the step that brings the context to S attends over S positions
        limit = len(contexts) / (sum(step_bytes(model, S) for S in contexts) / bandwidth)
        limits[f"decode to {N}"] = limit
        shares[f"decode to {N}"] = {name: rate / limit for name, rate in rows[f"decode to {N}"].items()}
    return shares, limits


# ---------------------------------------------------------------------------------------------
# Fresh processes: cold start and peak memory

COLD_START = {  # Python source per engine: prints the seconds from the first import to the first token
    "numpy": "import time; start = time.perf_counter()\n"
             "from tinyllm_lab.weights import load_model\n"
             "import numpy as np\n"
             "model = load_model({folder!r})\n"
             "int(np.argmax(model.forward(np.array([1]), model.new_cache())[-1]))\n"
             "print(time.perf_counter() - start)\n",
    "torch": "import time; start = time.perf_counter()\n"
             "import torch\n"
             "from tinyllm_lab.reference import load_hf_folder\n"
             "torch.set_num_threads(1)\n"
             "model = load_hf_folder({folder!r})\n"
             "with torch.inference_mode(): int(model(torch.tensor([[1]]), start_pos=0)[0, -1].argmax())\n"
             "print(time.perf_counter() - start)\n",
}

PEAK_MEMORY = "from tinyllm_lab.bench import peak_memory\nprint(peak_memory({engine!r}, {folder!r}))\n"


def peak_memory(engine_name, folder):  # -> MiB; meant for a fresh process that loads only this engine
    """The largest resident size of this process after the benchmark's biggest jobs on one engine."""
    engine = ENGINES[engine_name](folder)
    tokens = np.random.default_rng(SEED).integers(0, engine.model.config.vocab_size, max(CONTEXTS))
    one_call("prefill", tokens[:max(PREFILL_LENGTHS)])(engine)
    decode(tokens[:PROMPT_LENGTH], max(CONTEXTS))(engine)
    one_call("recompute", tokens)(engine)
    return peak_rss_mib()


def peak_rss_mib():  # -> the largest resident size this process has had, in MiB
    try:  # Linux's VmHWM: this program's own peak (ru_maxrss also counts the parent's, inherited across fork)
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024  # kB
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # elsewhere: the portable figure


def run_fresh(source):  # -> the number `source` prints, run by a new interpreter with one thread everywhere
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"a benchmark subprocess failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])  # the last line: what the source printed last


def fresh_process_figures(folder, repeats):  # -> {row: {engine: value}}
    folder = str(folder)
    cold = {name: min(run_fresh(code.format(folder=folder)) for _ in range(repeats))
            for name, code in COLD_START.items()}
    memory = {name: run_fresh(PEAK_MEMORY.format(engine=name, folder=folder)) for name in FRESH_PROCESS_ENGINES}
    return {"cold start (s)": cold, "peak memory (MiB)": memory}


# ---------------------------------------------------------------------------------------------
# Threads, report, targets

def thread_report():  # -> one line; raises if any BLAS or OpenMP pool, or torch, has more than one thread
    import torch
    from threadpoolctl import threadpool_info
    pools = [p for p in threadpool_info() if p["user_api"] in ("blas", "openmp")]
    if any(p["num_threads"] != 1 for p in pools) or torch.get_num_threads() != 1:
        raise RuntimeError(f"expected one thread everywhere, found {pools} and torch {torch.get_num_threads()}")
    blas = [f"{p['internal_api']} {p['version']} ({p.get('architecture', '?')} kernels)"
            for p in pools if p["user_api"] == "blas" and "numpy" in p["filepath"]]
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    return (f"threads: 1 in each of {len(pools)} BLAS/OpenMP pools and in torch; numpy's BLAS: "
            f"{', '.join(blas) or 'not found'}" + (f", OPENBLAS_CORETYPE={coretype}" if coretype else ""))


def targets(rows, shares, cold_start, peak_memory):  # -> [(description, measured, passed)]
    """Issue 11's targets for the numpy engine, from figures of one run (ratios, so that load from elsewhere cancels)."""
    ours, ref, hf = ({row: v.get(name) for row, v in rows.items()} for name in ("numpy", "torch", "transformers"))
    checks = []
    for N in CONTEXTS:
        row = f"decode to {N}"
        checks += [(f"{row}: numpy's share of the roofline >= 0.70", shares[row]["numpy"], 0.70),
                   (f"{row}: numpy / torch >= 1.3", ours[row] / ref[row], 1.3),
                   (f"{row}: numpy / transformers >= 1.6", ours[row] / hf[row], 1.6)]
    sampled, greedy = (ours[f"Session {kind} to {SESSION_CONTEXT}"] for kind in ("sampled", "greedy"))
    checks += [
        ("Session sampled (temperature 0.8, top-p 0.95) / greedy >= 0.9", sampled / greedy, 0.9),
        ("prefill 512: numpy / torch >= 1.0", ours["prefill 512"] / ref["prefill 512"], 1.0),
        ("numpy decode to 1024 / decode to 256 >= 0.85", ours["decode to 1024"] / ours["decode to 256"], 0.85),
        ("numpy at 1024: cached step / no cache >= 25", ours["cached step at 1024"] / ours["no cache at 1024"], 25)]
    results = [(text, value, value >= needed) for text, value, needed in checks]
    return results + [
        ("numpy cold start < 0.3 s", cold_start, cold_start < 0.3),
        (f"numpy peak memory <= {PEAK_MEMORY_BEFORE + 20} MiB (before issue 11: {PEAK_MEMORY_BEFORE}, + 20)",
         peak_memory, peak_memory <= PEAK_MEMORY_BEFORE + 20)]


def print_table(title, rows, columns, digits=1):  # rows: {row: {column: value}}; a missing value prints as "-"
    print(f"\n{title:<28}" + "".join(f"{c:>14}" for c in columns))
    for row, v in rows.items():
        cells = [f"{v[c]:>14.{digits}f}" if v.get(c) is not None else f"{'-':>14}" for c in columns]
        print(f"{row:<28}" + "".join(cells))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinyllm_lab.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="weights", help="a Hugging Face Llama folder (default: weights)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure, the best kept (default 5)")
    parser.add_argument("--quick", action="store_true", help="one run per figure: a rough look in about a minute")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    repeats = 1 if args.quick else args.repeats

    engines = [ENGINES[name](args.weights) for name in ENGINES]
    model = engines[0].model
    print(thread_report())
    bandwidth = gemv_bandwidth(GEMV_MIB, repeats)
    rows, decoded = measure(engines, model.config.vocab_size, repeats, decode_only=("transformers",))
    rows.update(measure_sessions(model, repeats))
    bandwidth = max(bandwidth, gemv_bandwidth(GEMV_MIB, repeats))  # measured before and after: the best
    in_cache = gemv_bandwidth(max(1, round(step_bytes(model, 0) / 2**20)), repeats)
    shares, limits = roofline(model, rows, bandwidth)
    fresh = fresh_process_figures(args.weights, repeats)

    for row, v in rows.items():
        v["numpy/torch"] = v["numpy"] / v["torch"] if v.get("torch") else None
        v["numpy/hf"] = v["numpy"] / v["transformers"] if v.get("transformers") else None
    print_table(f"tokens/s, best of {repeats}", {r: {k: x for k, x in v.items() if "/" not in k} for r, v in rows.items()},
                ["numpy", "torch", "transformers"])
    print_table("ratios", {r: v for r, v in rows.items() if v["numpy/torch"] or v["numpy/hf"]},
                ["numpy/torch", "numpy/hf"], digits=2)
    c = model.config
    print(f"\nroofline: a decode step reads {step_bytes(model, 0) / 1e6:.1f} MB of weights + "
          f"{step_bytes(model, 1) - step_bytes(model, 0)} B per cached position; a GEMV over {GEMV_MIB} MiB streams "
          f"{bandwidth / 1e9:.1f} GB/s on one core now (over {step_bytes(model, 0) / 2**20:.0f} MiB, the weights' "
          f"size, which caches may hold: {in_cache / 1e9:.1f} GB/s)")
    print_table("share of the limit", {r: {"limit tok/s": limits[r], **v} for r, v in shares.items()},
                ["limit tok/s", "numpy", "torch", "transformers"], digits=2)
    print_table("fresh process", fresh, list(FRESH_PROCESS_ENGINES), digits=3)
    for name in ("torch", "transformers"):
        ours, theirs = decoded["numpy"], decoded[name]
        same = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), len(ours))
        print(f"greedy decoding: numpy and {name} pick the same first {same} of {len(ours)} tokens")
    print(f"(model: {c.n_layers} layers, dim {c.dim}, vocab {c.vocab_size}; os.getloadavg() at the end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})")

    print("\ntargets for the numpy engine:")
    results = targets(rows, shares, fresh["cold start (s)"]["numpy"], fresh["peak memory (MiB)"]["numpy"])
    for text, value, passed in results:
        print(f"  {'PASS' if passed else 'FAIL'}  {text}  (measured {value:.2f})")
    return 0 if all(passed for *_, passed in results) else 1


if __name__ == "__main__":
    sys.exit(main())
