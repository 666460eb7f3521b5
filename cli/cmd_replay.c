/* cli/cmd_replay.c - placeholder until the module lands (see the open issues). */
#include "cli.h"

int cmd_replay(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	cli_error("'replay' is not implemented yet");
	return CLI_EXIT_ERROR;
}
