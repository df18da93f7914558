/*
 * main.c - the kv command's entry point: parse the line (kv.c), run the
 * command, and make sure what it wrote to stdout got there.
 *
 * Kept apart from the parser so that tests/fuzz_cli can link every other
 * file of cli/ and call cli_parse() directly.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "sys.h"

/* stdout is buffered: a closed pipe or a full disk may only show when it is
 * flushed, and a script must not get exit 0 for output it never received. */
static int finish_stdout(int status)
{
	int err = fflush(stdout) != 0 ? errno : 0;

	if (err == 0 && ferror(stdout))
		err = EIO;
	if (err != 0 && status == CLI_OK) {
		cli_fail("write to stdout: %s", strerror(err));
		status = CLI_ERROR;
	}
	return status;
}

int main(int argc, char **argv)
{
	struct cli cli;
	int status;

	cli_sys_init();

	status = cli_parse(&cli, argc, argv);
	if (status == CLI_OK && cli.run != NULL)
		status = cli.run(&cli);
	return finish_stdout(status);
}
