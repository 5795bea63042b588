/* cmd: the subcommands of the cairn binary, one file each (app/cmd_<name>.c).
 * Each returns the process exit status; only main() calls exit(). */
#ifndef CAIRN_APP_CMD_H
#define CAIRN_APP_CMD_H

#define CAIRN_VERSION "0.5.0-dev"   // this wave: hybrids, quantized weights, agents

int cmd_serve(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_quantize(int argc, char **argv);

#endif
