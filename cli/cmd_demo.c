/*
 * cli/cmd_demo.c - `scry demo`: a thin entry to the demo, which lives in
 * examples/demo/ (cluster.c, shop.c, story.c; docs/demo.md).
 */
#include "cli.h"
#include "demo.h"

int cmd_demo(int argc, char **argv)
{
	return demo_main(argc, argv);
}
