package dev.sessionops.tomcat;

import java.io.IOException;

import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import jakarta.servlet.http.HttpSession;

/**
 * A session counter. POST /login starts a session (counter 0); GET /session adds one to
 * its counter; GET /session?read=1 only reads it. Every answer names the pod that served
 * it, so a client can tell which server a session was read from. A request without a
 * known session gets 404 and never creates one: a replica that lacks a session must say
 * so, not hand out an empty one.
 */
public class CounterServlet extends HttpServlet {
    private static final long serialVersionUID = 1L;
    static final String COUNTER = "counter";

    @Override
    protected void doPost(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        if (!"/login".equals(req.getServletPath())) {
            resp.sendError(HttpServletResponse.SC_METHOD_NOT_ALLOWED);
            return;
        }
        HttpSession old = req.getSession(false);
        if (old != null) {
            old.invalidate();
        }
        HttpSession s = req.getSession(true);
        s.setAttribute(COUNTER, Long.valueOf(0));
        write(resp, HttpServletResponse.SC_OK, s.getId(), 0);
    }

    @Override
    protected void doGet(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        if ("/login".equals(req.getServletPath())) {
            doPost(req, resp);
            return;
        }
        HttpSession s = req.getSession(false);
        if (s == null) {
            write(resp, HttpServletResponse.SC_NOT_FOUND, "", -1);
            return;
        }
        long n;
        // Two requests of one session on one pod must not both read n and both write n+1.
        synchronized (s.getId().intern()) {
            Object v = s.getAttribute(COUNTER);
            n = v instanceof Long ? (Long) v : 0;
            if (req.getParameter("read") == null) {
                n++;
                s.setAttribute(COUNTER, Long.valueOf(n));
            }
        }
        write(resp, HttpServletResponse.SC_OK, s.getId(), n);
    }

    static String instance() {
        String pod = System.getenv("POD_NAME");
        if (pod == null || pod.isEmpty()) {
            pod = System.getenv("HOSTNAME");
        }
        return pod == null ? "" : pod;
    }

    // write answers JSON. No Content-Length and no flush: the response leaves only after
    // the ReplicationValve has sent the change to the peers.
    private static void write(HttpServletResponse resp, int status, String id, long counter) throws IOException {
        resp.setStatus(status);
        resp.setContentType("application/json");
        resp.setHeader("Cache-Control", "no-store");
        resp.getWriter().print("{\"id\":\"" + id + "\",\"counter\":" + counter + ",\"instance\":\"" + instance() + "\"}\n");
    }
}
