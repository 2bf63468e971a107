/* Flows data-exchange crypto and the endpoint server.
 * Placeholder until the Flows module lands. */
#ifndef FLOWVAULT_FLOW_H
#define FLOWVAULT_FLOW_H
#endif
