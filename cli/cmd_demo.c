/* cli/cmd_demo.c - placeholder until the module lands (see the open issues). */
#include "cli.h"

int cmd_demo(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	cli_error("'demo' is not implemented yet");
	return CLI_EXIT_ERROR;
}
