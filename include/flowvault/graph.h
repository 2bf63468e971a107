/* Graph API: register and check the business public key (see issue text).
 * Placeholder until the Graph client lands. */
#ifndef FLOWVAULT_GRAPH_H
#define FLOWVAULT_GRAPH_H
#endif
