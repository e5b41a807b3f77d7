/* spin generate: step 1 of uclaml/SPIN (spin/generate.py). The current model θ_t answers every
 * prompt of one shard of a split; the answers go to loser_<k>.jsonl in uclaml/SPIN's schema.
 * Unlike the Python original (which appends, so a rerun duplicates rows), a rerun resumes: rows
 * already in the shard file are checked against the input and skipped, a torn last line is cut,
 * and finished rows are appended and fsync'ed batch by batch. The options that determine the rows
 * are stored next to the shard (loser_<k>.options.json); a rerun with other options is refused
 * unless --overwrite. Under mpirun the rows still to do are split over the ranks in rounds and rank 0
 * appends each round's rows in shard order (docs/distributed.md). */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tools/spin/cli_comm.h"
#include "tools/spin/commands.h"
#include "tools/spin/gen_cli.h"
#include "tools/spin/jsonl_io.h"
#include "train/opponent_scores.h"

static void help(FILE *f) {
    fprintf(
        f,
        "usage: spin generate --model DIR --input PATH [--output-dir DIR] [--split NAME] [--frac-len N]\n"
        "                     [--data-frac K] [options]\n"
        "\n"
        "The model answers every prompt (real[0]) of one shard of a split, as uclaml/SPIN's\n"
        "spin/generate.py: the split is shuffled with seed 42 (spin's permutation, not numpy's), the\n"
        "shard is rows [frac_len*K, frac_len*(K+1)) (the whole split when frac_len is 0), and each row\n"
        "is written to DIR/loser_K.jsonl (DIR/loser_K_test.jsonl for --split test) as\n"
        "  {\"real\": [user, assistant], \"generated\": [user, {\"role\": \"assistant\", \"content\": "
        "ANSWER}]}\n"
        "with ANSWER = the decoded text with \"</s>\" removed and leading white space stripped.\n"
        "\n"
        "Rerunning the same command resumes: rows already in the file are checked against the shard\n"
        "and skipped, a partial last line is cut off, and finished rows are appended and fsync'ed every\n"
        "--batch-size rows, so a killed run loses at most the batch in flight. The options are stored\n"
        "in DIR/loser_K.options.json; a rerun with different ones is an error unless --overwrite.\n"
        "\n"
        "options:\n"
        "  --model DIR          model directory (config.json, safetensors weights, tokenizer) (required)\n"
        "  --tokenizer PATH     tokenizer.json or its directory (default: the model directory)\n"
        "  --input PATH         (or --input-dir) the data: a JSONL file, or a directory with <split>.jsonl,\n"
        "                       <split>_*.jsonl or <split>-*.jsonl files (`spin reformat` output) "
        "(required)\n"
        "  --output-dir DIR     where the shard goes (default generated)\n"
        "  --split NAME         split of a directory input (default train)\n"
        "  --frac-len N         rows per shard, 0: the whole split (default 0)\n"
        "  --data-frac K        the shard's number (default 0)\n"
        "  --chat-template      build prompts with the chat template as training does ([system \"\",\n"
        "                       user] and the generation prompt; --template NAME or the tokenizer's)\n"
        "                       (default: off: uclaml/SPIN's \"### Instruction: P\\n\\n### Response: \")\n"
        "  --template NAME      chat template for --chat-template (default: from tokenizer_config.json)\n"
        "  --attend-prompt-eos  with --chat-template, let the answer attend to the EOS tokens inside the\n"
        "                       prompt, as Hugging Face generate does (default: off: they get attention\n"
        "                       0, as uclaml/SPIN's training and scoring collator gives them)\n"
        "  --add-special        encode prompts with the tokenizer's special tokens (BOS) (default: off,\n"
        "                       as uclaml/SPIN)\n"
        "  --max-length N       a prompt longer than N tokens is an error naming its file and line\n"
        "                       (default: the model's max_position_embeddings)\n"
        "  --overwrite          start the shard over (default: resume; different options are an error)\n"
        "%s"
        "  --help, -h           this help\n"
        "Defaults differ from `spin complete` where uclaml/SPIN's differ: --batch-size 16. Option names\n"
        "may be spelt with underscores as generate.py's (--frac_len, --data_frac, --output_dir).\n"
        "\n"
        "`mpirun -np N spin generate ...` (a -DSPIN_MPI=ON build) splits the rows still to do over the\n"
        "ranks in rounds of N x 4 x --batch-size rows; rank 0 appends each round's rows in shard order,\n"
        "so the file is the one a single process writes (greedy or sampled: a row's samples depend on\n"
        "the seed and its row only). A killed job keeps the rounds already written; rerunning resumes.\n",
        gen_cli_options_help);
}

typedef struct {
    const jl_row *row;
    char *prompt;
    int32_t *ids;
    int64_t n_ids;
} item;

typedef struct {
    int fd;
    const char *path, *eos;
    item *it;      /* the rows still to do, in shard order */
    char **answer; /* [n_todo] set by the callback */
    int64_t n_todo, written, flushed_at, batch, resumed, total, empty;
    double t0;
    bool tty;
    int stop_after; /* test hook: SIGSTOP after this many flushes (0: off) */
    int flushes;
} run_state;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int write_all(int fd, const char *s, size_t n) {
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Appends the finished rows that follow the written ones in shard order, then fsyncs. */
static spin_status flush_rows(run_state *s, bool final) {
    int64_t upto = s->written;
    while (upto < s->n_todo && s->answer[upto])
        upto++;
    if (upto == s->written || (!final && upto - s->flushed_at < s->batch))
        return SPIN_OK;
    for (int64_t i = s->written; i < upto; i++) {
        const jl_row *r = s->it[i].row;
        char *line = jl_pair_line(r->user, r->real, s->answer[i]);
        s->empty += !*s->answer[i];
        bool bad = !line || write_all(s->fd, line, strlen(line)) || write_all(s->fd, "\n", 1);
        free(line);
        if (bad)
            return spin_fail(SPIN_ERR_IO, "writing %s failed: %s", s->path, strerror(errno));
    }
    if (fsync(s->fd) != 0)
        return spin_fail(SPIN_ERR_IO, "fsync of %s failed: %s", s->path, strerror(errno));
    s->written = s->flushed_at = upto;
    double el = now_s() - s->t0, rate = el > 0 ? (double)upto / el : 0;
    int64_t done = s->resumed + upto;
    fprintf(stderr, "%sspin generate: %s: %lld/%lld rows (%lld resumed), %.2f rows/s, ETA %.0fs%s",
            s->tty ? "\r" : "", s->path, (long long)done, (long long)s->total, (long long)s->resumed, rate,
            rate > 0 ? (double)(s->n_todo - upto) / rate : 0.0, s->tty ? "" : "\n");
    if (s->stop_after && ++s->flushes == s->stop_after)
        raise(SIGSTOP);
    return SPIN_OK;
}

/* uclaml/SPIN: text.replace("</s>", "").lstrip() */
static char *postprocess(const char *text, const char *eos) {
    const char *pat = eos && *eos ? eos : "</s>";
    size_t pl = strlen(pat), n = strlen(text);
    char *o = malloc(n + 1), *w = o;
    if (!o)
        return NULL;
    for (const char *p = text; *p;) {
        if (!strncmp(p, pat, pl)) {
            p += pl;
            continue;
        }
        *w++ = *p++;
    }
    *w = 0;
    char *b = o;
    while (*b && strchr(" \t\r\n\f\v", *b))
        b++;
    memmove(o, b, strlen(b) + 1);
    return o;
}

static spin_status on_result(void *ctx, const spin_gen_result *r) {
    run_state *s = ctx;
    s->answer[r->index] = postprocess(r->text ? r->text : "", s->eos);
    if (!s->answer[r->index])
        return spin_fail(SPIN_ERR_OOM, "out of memory");
    return flush_rows(s, false);
}

/* ---- data parallel (mpirun) ---- */

#define ROUND_BATCHES 4 /* rows per rank per round, in batches: enough to keep the slots refilled */

typedef struct {
    char **answer;
    const char *eos;
} local_state;

static spin_status on_local_result(void *ctx, const spin_gen_result *r) {
    local_state *l = ctx;
    l->answer[r->index] = postprocess(r->text ? r->text : "", l->eos);
    return l->answer[r->index] ? SPIN_OK : spin_fail(SPIN_ERR_OOM, "out of memory");
}

/* The rows s->it[0, n_todo) over every rank, in rounds: each rank answers its contiguous block of the
 * round (spin_shard_range), the blocks go to rank 0 (strings joined by NULs, one broadcast per rank),
 * which stores them in s->answer and appends and fsyncs the round (flush_rows). Rank 0 holds the
 * file; the others pass a run_state whose fd is -1. Every step's status is agreed. */
static int generate_rounds(spin_comm *comm, gen_cli_model *g, const spin_gen_opts *o, run_state *s,
                           spin_gen_stats *st) {
    int rank = spin_comm_rank(comm), world = spin_comm_size(comm);
    int64_t round = (int64_t)world * ROUND_BATCHES * o->batch_size;
    double *sizes = calloc((size_t)world, sizeof *sizes);
    int rc = cli_agree(sizes && (rank != 0 || s->answer) ? 0 : 1);
    for (int64_t t = 0; rc == 0 && t < s->n_todo; t += round) {
        int64_t m = s->n_todo - t < round ? s->n_todo - t : round, lo, hi;
        spin_shard_range(m, rank, world, &lo, &hi);
        int64_t k = hi - lo;
        char **ans = calloc((size_t)(k ? k : 1), sizeof *ans);
        const int32_t **ids = calloc((size_t)(k ? k : 1), sizeof *ids);
        int64_t *lens = calloc((size_t)(k ? k : 1), sizeof *lens);
        int lrc = ans && ids && lens ? 0 : 1;
        for (int64_t i = 0; lrc == 0 && i < k; i++) {
            ids[i] = s->it[t + lo + i].ids;
            lens[i] = s->it[t + lo + i].n_ids;
        }
        /* a row's sampling stream is keyed by its row in the run's order: the same on any rank */
        spin_gen_opts call = *o;
        call.index_offset = s->resumed + t + lo;
        local_state l = {ans, s->eos};
        spin_gen_stats one = {0};
        if (lrc == 0 && k > 0 &&
            spin_generate(g->m, g->tok, ids, lens, k, &call, on_local_result, &l, &one) != SPIN_OK) {
            fprintf(stderr, "spin generate: rank %d: %s\n", rank, spin_last_error());
            lrc = 1;
        }
        st->decode_tokens += one.decode_tokens;
        st->decode_s += one.decode_s;
        rc = cli_agree(lrc);
        /* the blocks' sizes, then each block to every rank (rank 0 keeps them) */
        size_t bytes = 0;
        for (int64_t i = 0; rc == 0 && i < k; i++)
            bytes += strlen(ans[i]) + 1;
        for (int q = 0; q < world; q++)
            sizes[q] = q == rank ? (double)bytes : 0;
        if (rc == 0 && spin_comm_allreduce_f64(comm, sizes, world, SPIN_REDUCE_SUM) != SPIN_OK) {
            fprintf(stderr, "spin generate: %s\n", spin_last_error());
            rc = 1;
        }
        /* a transport failure ends the loop on every rank (the job is broken); a local one (rank 0
         * out of memory) is carried to the agreement below so every rank makes every broadcast */
        int local = 0;
        for (int q = 0; rc == 0 && q < world; q++) {
            int64_t qlo, qhi;
            spin_shard_range(m, q, world, &qlo, &qhi);
            char *buf = malloc((size_t)sizes[q] + 1), *w = buf;
            if (!buf) {
                /* it cannot receive the block, and the others are already sending it: a hang that
                 * only the launcher's end of the job resolves */
                fprintf(stderr, "spin generate: rank %d: out of memory\n", rank);
                rc = 1;
                break;
            }
            for (int64_t i = 0; q == rank && i < k; i++) {
                size_t n = strlen(ans[i]) + 1;
                memcpy(w, ans[i], n);
                w += n;
            }
            if (sizes[q] > 0 && spin_comm_broadcast_bytes(comm, buf, (size_t)sizes[q], q) != SPIN_OK) {
                fprintf(stderr, "spin generate: %s\n", spin_last_error());
                rc = 1;
            }
            const char *r = buf;
            for (int64_t i = qlo; rc == 0 && local == 0 && rank == 0 && i < qhi; i++) {
                local = !(s->answer[t + i] = strdup(r));
                r += strlen(r) + 1;
            }
            free(buf);
        }
        if (local) {
            fprintf(stderr, "spin generate: out of memory\n");
            rc = 1;
        }
        for (int64_t i = 0; ans && i < k; i++)
            free(ans[i]);
        free(ans);
        free(ids);
        free(lens);
        if (rc == 0 && rank == 0 && flush_rows(s, true) != SPIN_OK) {
            fprintf(stderr, "%sspin generate: %s\n", s->tty ? "\n" : "", spin_last_error());
            rc = 1;
        }
        rc = cli_agree(rc);
    }
    free(sizes);
    /* the tokens of every rank; the decode time of the slowest */
    double tokens = (double)st->decode_tokens, tmax = st->decode_s;
    if (rc == 0 && (spin_comm_allreduce_f64(comm, &tokens, 1, SPIN_REDUCE_SUM) != SPIN_OK ||
                    spin_comm_allreduce_f64(comm, &tmax, 1, SPIN_REDUCE_MAX) != SPIN_OK))
        rc = 1;
    st->decode_tokens = (int64_t)tokens;
    st->decode_s = tmax;
    return rc;
}

/* The options that determine the shard's rows, as stored in the sidecar. */
static json_object *options_json(const char *model, uint64_t weights, uint64_t tok_hash, const char *input,
                                 const char *split, int64_t frac_len, int64_t data_frac, int64_t rows,
                                 const char *prompt_mode, bool add_special, int64_t max_length,
                                 const spin_gen_opts *o) {
    char hex[2][17];
    snprintf(hex[0], sizeof hex[0], "%016" PRIx64, weights);
    snprintf(hex[1], sizeof hex[1], "%016" PRIx64, tok_hash);
    json_object *j = json_object_new_object();
    json_object_object_add(j, "spin_generate", json_object_new_int(1));
    json_object_object_add(j, "model", json_object_new_string(model));
    json_object_object_add(j, "weights", json_object_new_string(hex[0]));
    json_object_object_add(j, "tokenizer", json_object_new_string(hex[1]));
    json_object_object_add(j, "input", json_object_new_string(input));
    json_object_object_add(j, "split", json_object_new_string(split));
    json_object_object_add(j, "frac_len", json_object_new_int64(frac_len));
    json_object_object_add(j, "data_frac", json_object_new_int64(data_frac));
    json_object_object_add(j, "rows", json_object_new_int64(rows));
    json_object_object_add(j, "prompt", json_object_new_string(prompt_mode));
    json_object_object_add(j, "add_special", json_object_new_boolean(add_special));
    json_object_object_add(j, "prompt_eos",
                           json_object_new_string(o->mask_prompt_id ? "masked" : "attended"));
    json_object_object_add(j, "max_length", json_object_new_int64(max_length));
    json_object_object_add(j, "max_new_tokens", json_object_new_int64(o->max_new_tokens));
    json_object_object_add(j, "temperature", json_object_new_double((double)o->temperature));
    json_object_object_add(j, "top_p", json_object_new_double((double)o->top_p));
    json_object_object_add(j, "top_k", json_object_new_int64(o->top_k));
    json_object_object_add(j, "seed", json_object_new_int64((int64_t)o->seed));
    json_object_object_add(j, "ignore_eos", json_object_new_boolean(o->ignore_eos));
    json_object *stop = json_object_new_array();
    for (int i = 0; i < o->n_stop; i++)
        json_object_array_add(stop, json_object_new_string(o->stop[i]));
    json_object_object_add(j, "stop", stop);
    return j;
}

/* 0 when the stored options equal `want`; else prints the first key that differs and returns 1. */
static int same_options(const char *side, json_object *want, const char *shard) {
    json_object *have = json_object_from_file(side);
    if (!have) {
        fprintf(stderr, "spin generate: %s exists but %s cannot be read (%s); --overwrite starts over\n",
                shard, side, json_util_get_last_err() ? json_util_get_last_err() : "?");
        return 1;
    }
    int rc = 0;
    json_object_object_foreach(want, k, v) {
        json_object *h = NULL;
        if (!json_object_object_get_ex(have, k, &h) || !json_object_equal(h, v)) {
            fprintf(
                stderr,
                "spin generate: %s was generated with %s %s, this run has %s (--overwrite starts the shard "
                "over)\n",
                shard, k, h ? json_object_to_json_string(h) : "(absent)", json_object_to_json_string(v));
            rc = 1;
            break;
        }
    }
    json_object_put(have);
    return rc;
}

static int write_sidecar(const char *side, json_object *j) {
    char *tmp = NULL;
    FILE *f = jl_begin("generate", side, true, &tmp);
    if (!f)
        return 1;
    fprintf(f, "%s\n",
            json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    return jl_commit("generate", f, tmp, side, true);
}

/* Reads the shard file's complete lines, cuts a partial last line, and checks that line i is
 * row i of the shard. *done = the rows already there. */
static int resume_scan(int fd, const char *path, item *it, int64_t n, int64_t *done) {
    *done = 0;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fprintf(stderr, "spin generate: %s: %s\n", path, strerror(errno));
        return 1;
    }
    FILE *f = fdopen(dup(fd), "r");
    if (!f) {
        fprintf(stderr, "spin generate: cannot read %s: %s\n", path, strerror(errno));
        return 1;
    }
    char *buf = NULL;
    size_t cap = 0;
    ssize_t got;
    off_t good = 0;
    int64_t line = 0;
    int rc = 0;
    while (rc == 0 && (got = getline(&buf, &cap, f)) > 0) {
        if (buf[got - 1] != '\n')
            break; /* torn by a kill: cut below */
        line++;
        if (*done == n) {
            fprintf(stderr, "spin generate: %s:%lld: more rows than the shard's %lld\n", path,
                    (long long)line, (long long)n);
            rc = 1;
            break;
        }
        json_object *o = jl_parse_object("generate", path, line, buf, (size_t)got - 1);
        const char *u = o ? jl_message("generate", path, line, o, "real", 0, "user") : NULL;
        const char *r = u ? jl_message("generate", path, line, o, "real", 1, "assistant") : NULL;
        const char *g = r ? jl_message("generate", path, line, o, "generated", 1, "assistant") : NULL;
        if (!g) {
            rc = 1;
        } else if (strcmp(u, it[*done].row->user) != 0 || strcmp(r, it[*done].row->real) != 0) {
            fprintf(
                stderr,
                "spin generate: %s:%lld: this row is not row %lld of the shard (%s:%lld); the input changed "
                "(--overwrite starts over)\n",
                path, (long long)line, (long long)*done, it[*done].row->file, (long long)it[*done].row->line);
            rc = 1;
        } else {
            (*done)++;
            good += got;
        }
        json_object_put(o);
    }
    free(buf);
    fclose(f);
    if (rc == 0 && good < st.st_size) {
        fprintf(stderr, "spin generate: %s: cutting a partial last line (%lld bytes)\n", path,
                (long long)(st.st_size - good));
        if (ftruncate(fd, good) != 0 || fsync(fd) != 0) {
            fprintf(stderr, "spin generate: cannot truncate %s: %s\n", path, strerror(errno));
            rc = 1;
        }
    }
    if (rc == 0 && lseek(fd, 0, SEEK_END) < 0)
        rc = 1;
    return rc;
}

static int parse_count(const char *opt, const char *v, int64_t *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < 0) {
        fprintf(stderr, "spin generate: %s expects an integer >= 0 (got '%s')\n", opt, v);
        return 2;
    }
    *out = x;
    return 0;
}

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *tokenizer = NULL, *tpl = NULL, *input = NULL, *out_dir = "generated",
               *split = "train";
    int64_t frac_len = 0, data_frac = 0, max_length = -1;
    bool chat = false, add_special = false, overwrite = false, attend_prompt_eos = false;
    spin_gen_opts o = spin_gen_opts_default();
    o.batch_size = 16; /* generate.py's --batch_size */
    int rc = 0;
    jl_dash_options(argc, argv);
    for (int i = 1; i < argc && rc == 0; i++) {

        const char *a = argv[i];
        int r = gen_cli_option("generate", argc, argv, &i, &o);
        if (r < 0)
            rc = 2;
        if (r != 0)
            continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help(stdout);
            free((void *)o.stop);
            return 0;
        } else if (!strcmp(a, "--chat-template")) {
            chat = true;
        } else if (!strcmp(a, "--add-special")) {
            add_special = true;
        } else if (!strcmp(a, "--attend-prompt-eos")) {
            attend_prompt_eos = true;
        } else if (!strcmp(a, "--overwrite")) {
            overwrite = true;
        } else if (i + 1 < argc && !strcmp(a, "--model")) {
            model = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--tokenizer")) {
            tokenizer = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--template")) {
            tpl = argv[++i];
        } else if (i + 1 < argc && (!strcmp(a, "--input") || !strcmp(a, "--input-dir"))) {
            input = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--output-dir")) {
            out_dir = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--split")) {
            split = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--frac-len")) {
            rc = parse_count(a, argv[++i], &frac_len);
        } else if (i + 1 < argc && !strcmp(a, "--data-frac")) {
            rc = parse_count(a, argv[++i], &data_frac);
        } else if (i + 1 < argc && !strcmp(a, "--max-length")) {
            rc = parse_count(a, argv[++i], &max_length);
        } else {
            fprintf(stderr, "spin generate: unknown or incomplete option '%s'\n", a);
            help(stderr);
            rc = 2;
        }
    }
    if (rc == 0 && (!model || !input)) {
        fprintf(stderr, "spin generate: --model DIR and --input PATH are required\n");
        help(stderr);
        rc = 2;
    }
    if (rc) {
        free((void *)o.stop);
        return cli_agree(rc);
    }
    /* under mpirun: rank 0 alone looks at, locks and writes the shard; the others generate */
    int rank = cli_rank(), world = cli_size();
    bool writer = rank == 0;
    jl_rows rows = {0};
    rc = jl_read_split("generate", input, split, false, false, &rows);
    int64_t start = 0, end = rows.n;
    if (rc == 0 && frac_len > 0) {
        start = frac_len * data_frac;
        end = start + frac_len < rows.n ? start + frac_len : rows.n;
        if (start >= rows.n) {
            fprintf(stderr,
                    "spin generate: shard %lld of %lld rows each is empty: the %s split has %lld rows\n",
                    (long long)data_frac, (long long)frac_len, split, (long long)rows.n);
            rc = 1;
        }
    }
    int64_t n = rc ? 0 : end - start;
    int64_t *perm = rc ? NULL : malloc((size_t)rows.n * sizeof *perm);
    item *it = rc ? NULL : calloc((size_t)(n ? n : 1), sizeof *it);
    if (rc == 0 && (!perm || !it)) {
        fprintf(stderr, "spin generate: out of memory\n");
        rc = 1;
    }
    if (rc == 0) {
        jl_permutation(42, rows.n, perm); /* load_dataset(...).shuffle(seed=42) */
        for (int64_t i = 0; i < n; i++)
            it[i].row = &rows.row[perm[start + i]];
    }
    gen_cli_model g = {0};
    bool loaded = false;
    if (rc == 0) {
        rc = gen_cli_load("generate", model, tokenizer, tpl, &g);
        loaded = rc == 0;
    }
    if (rc == 0) {
        gen_cli_apply_generation_config(g.m, &o);
        if (max_length < 0)
            max_length = g.m->cfg.max_position_embeddings;
        if (chat && !g.have_template) {
            fprintf(stderr, "spin generate: --chat-template: %s (pass --template NAME)\n",
                    g.template_error ? g.template_error : "no chat template");
            rc = 2;
        }
    }
    /* every prompt is built and checked before anything is generated */
    for (int64_t i = 0; rc == 0 && i < n; i++) {
        const jl_row *r = it[i].row;
        spin_chat_message m[2] = {{"system", ""}, {"user", r->user}};
        if (chat ? spin_chat_render(g.tpl, m, 2, true, g.bos, g.eos, &it[i].prompt) != SPIN_OK
                 : spin_chat_render(SPIN_CHAT_INSTRUCTION, m + 1, 1, true, NULL, NULL, &it[i].prompt) !=
                       SPIN_OK) {
            fprintf(stderr, "spin generate: %s:%lld: real[0]: %s\n", r->file, (long long)r->line,
                    spin_last_error());
            rc = 1;
            break;
        }
        size_t k = 0;
        if (spin_tokenizer_encode(g.tok, it[i].prompt, strlen(it[i].prompt), add_special, &it[i].ids, &k) !=
            SPIN_OK) {
            fprintf(stderr, "spin generate: %s:%lld: real[0]: %s\n", r->file, (long long)r->line,
                    spin_last_error());
            rc = 1;
            break;
        }
        it[i].n_ids = (int64_t)k;
        if (it[i].n_ids > max_length) {
            fprintf(stderr,
                    "spin generate: %s:%lld: real[0]: the prompt is %lld tokens, longer than max_length %lld "
                    "(--max-length)\n",
                    r->file, (long long)r->line, (long long)it[i].n_ids, (long long)max_length);
            rc = 1;
        }
        for (size_t j = 0; rc == 0 && j < k; j++)
            if (it[i].ids[j] < 0 || it[i].ids[j] >= g.m->cfg.vocab_size) {
                fprintf(stderr, "spin generate: %s:%lld: token id %d is outside the model's vocabulary\n",
                        r->file, (long long)r->line, it[i].ids[j]);
                rc = 1;
            }
    }
    /* the sidecar and the shard */
    char name[96], side_name[96];
    const char *suffix = !strcmp(split, "train") ? "" : !strcmp(split, "test") ? "_test" : NULL;
    if (suffix) {
        snprintf(name, sizeof name, "loser_%lld%s.jsonl", (long long)data_frac, suffix);
        snprintf(side_name, sizeof side_name, "loser_%lld%s.options.json", (long long)data_frac, suffix);
    } else {
        snprintf(name, sizeof name, "loser_%lld_%.40s.jsonl", (long long)data_frac, split);
        snprintf(side_name, sizeof side_name, "loser_%lld_%.40s.options.json", (long long)data_frac, split);
    }
    char *path = NULL, *side = NULL;
    json_object *want = NULL;
    if (rc == 0 && writer)
        rc = jl_mkdir("generate", out_dir);
    if (rc == 0) {
        path = jl_join(out_dir, name);
        side = jl_join(out_dir, side_name);
        uint64_t wh = 0;
        /* the sidecar is rank 0's: the others skip hashing every weight */
        if (writer && spin_llama_weights_hash(g.m, &wh) != SPIN_OK) {
            fprintf(stderr, "spin generate: %s\n", spin_last_error());
            rc = 1;
        }
        char *rm = realpath(model, NULL), *ri = realpath(input, NULL);
        /* the training prompt is scored with its EOS tokens masked (quirk 3): generate from it so */
        o.mask_prompt_id = chat && !attend_prompt_eos && spin_tokenizer_eos_id(g.tok) >= 0;
        o.prompt_mask_id = spin_tokenizer_eos_id(g.tok);
        char prompt_mode[48];
        snprintf(prompt_mode, sizeof prompt_mode, "%s",
                 chat ? spin_chat_template_name(g.tpl) : "instruction");
        want = options_json(rm ? rm : model, wh, spin_tokenizer_hash(g.tok), ri ? ri : input, split, frac_len,
                            data_frac, n, prompt_mode, add_special, max_length, &o);
        free(rm);
        free(ri);
    }
    bool exists = writer && path && access(path, F_OK) == 0;
    if (rc == 0 && exists && !overwrite)
        rc = same_options(side, want, path);
    int fd = -1;
    if (rc == 0 && writer) {
        fd = open(path, O_RDWR | O_CREAT, 0666);
        if (fd < 0) {
            fprintf(stderr, "spin generate: cannot open %s: %s\n", path, strerror(errno));
            rc = 1;
        }
    }
    /* one writer per shard: a second run on it would interleave rows */
    struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (rc == 0 && writer && fcntl(fd, F_SETLK, &lk) != 0) {
        fprintf(stderr, "spin generate: %s is being written by another process (%s)\n", path,
                strerror(errno));
        rc = 1;
    }
    if (rc == 0 && writer && overwrite && ftruncate(fd, 0) != 0) {
        fprintf(stderr, "spin generate: cannot truncate %s: %s\n", path, strerror(errno));
        rc = 1;
    }
    if (rc == 0 && writer)
        rc = write_sidecar(side, want);
    int64_t done = 0;
    if (rc == 0 && writer)
        rc = resume_scan(fd, path, it, n, &done);
    /* closing the scan's stream dropped the lock (POSIX drops a process's record locks on a file
     * at any close of it): take it again for the writes */
    if (rc == 0 && writer && fcntl(fd, F_SETLK, &lk) != 0) {
        fprintf(stderr, "spin generate: %s is being written by another process (%s)\n", path,
                strerror(errno));
        rc = 1;
    }
    if (world > 1) { /* rank 0's resume point to every rank */
        rc = cli_agree(rc);
        if (rc == 0 && cli_bcast(&done, sizeof done))
            rc = 1;
    }
    run_state s = {.fd = fd,
                   .path = path,
                   .eos = g.eos,
                   .it = it + done,
                   .n_todo = n - done,
                   .batch = o.batch_size,
                   .resumed = done,
                   .total = n,
                   .t0 = now_s(),
                   .tty = isatty(2)};
    const char *hook = getenv("SPIN_GENERATE_TEST_STOP_AFTER");
    s.stop_after = hook ? atoi(hook) : 0;
    int32_t **ids = NULL;
    int64_t *lens = NULL;
    spin_gen_stats st = {0};
    if (rc == 0 && world > 1) {
        s.answer = writer ? calloc((size_t)(s.n_todo ? s.n_todo : 1), sizeof *s.answer) : NULL;
        rc = generate_rounds(cli_comm(), &g, &o, &s, &st);
    } else if (rc == 0 && s.n_todo > 0) {
        s.answer = calloc((size_t)s.n_todo, sizeof *s.answer);
        ids = malloc((size_t)s.n_todo * sizeof *ids);
        lens = malloc((size_t)s.n_todo * sizeof *lens);
        if (!s.answer || !ids || !lens) {
            fprintf(stderr, "spin generate: out of memory\n");
            rc = 1;
        }
        for (int64_t i = 0; rc == 0 && i < s.n_todo; i++) {
            ids[i] = s.it[i].ids;
            lens[i] = s.it[i].n_ids;
        }
        /* a prompt's sampling stream is keyed by its row in the run's order, so a resumed run draws
         * what the uninterrupted run would have */
        if (rc == 0) {
            o.index_offset = done;
            if (spin_generate(g.m, g.tok, (const int32_t *const *)ids, lens, s.n_todo, &o, on_result, &s,
                              &st) != SPIN_OK ||
                flush_rows(&s, true) != SPIN_OK) {
                fprintf(stderr, "%sspin generate: %s\n", s.tty ? "\n" : "", spin_last_error());
                rc = 1;
            }
        }
    }
    if (rc == 0 && writer) {
        fprintf(stderr, "%s", s.tty && s.n_todo ? "\n" : "");
        printf("spin generate: %s: %lld rows (%lld resumed, %lld generated, %lld tokens at %.1f tok/s)%s\n",
               path, (long long)n, (long long)done, (long long)s.n_todo, (long long)st.decode_tokens,
               st.decode_s > 0 ? (double)st.decode_tokens / st.decode_s : 0.0,
               s.empty ? " - some answers are empty" : "");
        if (s.empty)
            fprintf(stderr, "spin generate: warning: %lld empty answers (`spin convert` refuses them)\n",
                    (long long)s.empty);
    }
    if (fd >= 0)
        close(fd);
    for (int64_t i = 0; s.answer && i < s.n_todo; i++)
        free(s.answer[i]);
    if (world > 1)
        rc = cli_agree(rc);
    free(s.answer);
    free(ids);
    free(lens);
    for (int64_t i = 0; it && i < n; i++) {
        free(it[i].prompt);
        free(it[i].ids);
    }
    json_object_put(want);
    free(path);
    free(side);
    free(it);
    free(perm);
    if (loaded)
        gen_cli_free(&g);
    jl_rows_free(&rows);
    free((void *)o.stop);
    return rc;
}
