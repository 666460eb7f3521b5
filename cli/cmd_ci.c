/* cli/cmd_ci.c - placeholder until the module lands (see the open issues). */
#include "cli.h"

int cmd_ci(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	cli_error("'ci' is not implemented yet");
	return CLI_EXIT_ERROR;
}
