/* cli/cmd_capture_proxy.c - placeholder until the module lands (see the open issues). */
#include "cli.h"

int cmd_capture_proxy(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	cli_error("'capture_proxy' is not implemented yet");
	return CLI_EXIT_ERROR;
}
