#ifndef TANDEM_UUID_H
#define TANDEM_UUID_H

/* Write a random UUID v4 (36 characters + NUL) into out. */
void	 uuid_v4(char out[37]);

#endif
