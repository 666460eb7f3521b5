// A pgjdbc client through the capture proxy with sslmode=verify-full
// (tests/test_proxy_tls.sh). usage: java -cp postgresql.jar JdbcTls.java URL
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;

public class JdbcTls {
    public static void main(String[] args) throws Exception {
        try (Connection c = DriverManager.getConnection(args[0])) {
            try (PreparedStatement ps = c.prepareStatement("SELECT ?::int + 1 AS jdbc_tls")) {
                ps.setInt(1, 41);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    System.out.println(rs.getInt(1));
                }
            }
        }
    }
}
