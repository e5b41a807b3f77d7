#ifndef SPIN_TOOLS_COMMANDS_H
#define SPIN_TOOLS_COMMANDS_H

/* Each subcommand gets argv starting at its own name; returns the process exit code. */
int cmd_info(int argc, char **argv);
int cmd_selftest(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_complete(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_reformat(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_iterate(int argc, char **argv);

#endif
