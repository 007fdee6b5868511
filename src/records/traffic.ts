/**
 * Where an endpoint's traffic entered the overlay, as the kernel's counters
 * (sys/ingress-counters.ts) and the policies (policy/) name it: the node
 * whose VTEP sent it, or LOCAL_VIA for clients on this same node.
 */
export const LOCAL_VIA = 'local';
