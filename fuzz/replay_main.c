/* Runs a fuzz target once over every file of its committed corpus (make check, any compiler). */
#include "config.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
	FILE *file = fopen(path, "rb");
	if (!file) {
		perror(path);
		return -1;
	}
	static uint8_t buffer[1 << 20];
	size_t size = fread(buffer, 1, sizeof buffer, file);
	fclose(file);
	LLVMFuzzerTestOneInput(buffer, size);
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir_path = argc > 1 ? argv[1] : FUZZ_CORPUS_DIR;
	DIR *dir = opendir(dir_path);
	if (!dir) {
		perror(dir_path);
		return 1;
	}
	int replayed = 0, failed = 0;
	struct dirent *entry;
	while ((entry = readdir(dir))) {
		if (entry->d_name[0] == '.')
			continue;
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir_path, entry->d_name);
		if (replay_file(path) < 0)
			failed++;
		else
			replayed++;
	}
	closedir(dir);
	printf("replayed %d corpus inputs from %s, %d unreadable\n", replayed, dir_path, failed);
	return failed || replayed == 0 ? 1 : 0;
}
