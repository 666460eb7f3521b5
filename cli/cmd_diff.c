/* cli/cmd_diff.c - placeholder until the module lands (see the open issues). */
#include "cli.h"

int cmd_diff(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	cli_error("'diff' is not implemented yet");
	return CLI_EXIT_ERROR;
}
