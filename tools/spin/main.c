/* The spin command line: subcommand dispatch. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "tools/spin/cli_comm.h"
#include "tools/spin/commands.h"

static void usage(FILE *f) {
    fprintf(f, "usage: spin [--version] [--help] <command> [options]\n"
               "\n"
               "commands:\n"
               "  info       build options, backends and devices, BLAS and its kernel, threads\n"
               "  selftest   run the op case table on a device against the double-precision reference\n"
               "  demo       train a small character-level transformer and print a greedy continuation\n"
               "  tokenize   text <-> token ids (tokenizer.json, model directory or GGUF; JSON lines)\n"
               "  complete   batched generation: prompts in, completions out (JSON lines)\n"
               "  chat       interactive conversation with a model through its chat template\n"
               "  plot       PNG/SVG charts of a training run's metrics.jsonl\n"
               "  reformat   SFT data (messages, ShareGPT, Alpaca) -> SPIN rows, train/test split\n"
               "  generate   the current model answers every prompt of a split (loser_<k>.jsonl shards)\n"
               "  convert    gather generated shards into train_prefs/test_prefs files\n"
               "  eval       log-probs, reward accuracy and margin against the opponent, lengths\n"
               "  score      score the opponent once over the training rows (SPIN mode b)\n"
               "  train      fine-tune with SPIN/DPO/SPPO losses from uclaml/SPIN's YAML config\n"
               "  iterate    the self-play loop: generate, convert, score, train, eval for each iteration\n"
               "\n"
               "environment:\n"
               "  SPIN_DEVICE        device to use, e.g. cpu, opencl:1 (default: the build's accelerator)\n"
               "  SPIN_LOG_LEVEL     debug | info | warn | error (default warn)\n"
               "  OMP_NUM_THREADS    CPU threads\n"
               "  OPENBLAS_CORETYPE  OpenBLAS kernel; spin picks one from the CPU's features when unset\n");
}

static int run(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("spin %s (commit %s)\n", SPIN_VERSION, SPIN_GIT_COMMIT);
        return 0;
    }
    /* under mpirun only the distributed commands run; any other would write its files once per rank */
    static const char *const dist[] = {"train", "generate", "score", "iterate", "info", "selftest"};
    bool ok = cli_launched_size() == 1;
    for (size_t i = 0; !ok && i < sizeof dist / sizeof *dist; i++)
        ok = !strcmp(cmd, dist[i]);
    if (!ok) {
        fprintf(stderr,
                "spin %s: runs in one process; under mpirun only train, generate, score and iterate run "
                "(docs/distributed.md)\n",
                cmd);
        return 2;
    }
    if (!strcmp(cmd, "info"))
        return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "selftest"))
        return cmd_selftest(argc - 1, argv + 1);
    if (!strcmp(cmd, "demo"))
        return cmd_demo(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize"))
        return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "complete"))
        return cmd_complete(argc - 1, argv + 1);
    if (!strcmp(cmd, "chat"))
        return cmd_chat(argc - 1, argv + 1);
    if (!strcmp(cmd, "plot"))
        return cmd_plot(argc - 1, argv + 1);
    if (!strcmp(cmd, "score"))
        return cmd_score(argc - 1, argv + 1);
    if (!strcmp(cmd, "train"))
        return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "reformat"))
        return cmd_reformat(argc - 1, argv + 1);
    if (!strcmp(cmd, "generate"))
        return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "convert"))
        return cmd_convert(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval"))
        return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "iterate"))
        return cmd_iterate(argc - 1, argv + 1);
    fprintf(stderr, "spin: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}

int main(int argc, char **argv) {
    int rc = run(argc, argv);
    cli_comm_end(); /* every rank finalises MPI, or the launcher reports the job as failed */
    return rc;
}
