// usher: conditional access and pay-per-view for digital television. One subcommand per part;
// the command tree and its parsing are in cli.cc, each part's commands in cmd_<part>.cc.
#include "cli.h"

int main(int argc, char** argv) { return usher::cli::run_command_line(argc, argv); }
